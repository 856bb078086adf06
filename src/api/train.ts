import { loadRecipe } from '../recipe/load.js';
import { shortPath } from '../util/paths.js';
import { train as trainLoop } from '../train/loop.js';
import type { TrainCallbacks, TrainResult } from '../train/callbacks.js';
import type { MetricsRow } from '../train/checkpoint.js';
import { loadCheckpoint } from '../train/checkpoint.js';
import { checkPrunable, pruneCheckpoint, specFromRecipe, type PruneSummary } from '../train/prune.js';
import { reportAfterTraining } from '../report/after-train.js';

/** Recipe overrides: `--set` strings (`'train.epochs=3'`) or an object of key paths to values. */
export type RecipeOverrides = string[] | Record<string, unknown>;

export interface TrainOptions {
  /** checkpoint directory (default `checkpoints/<recipe name>`) */
  out?: string;
  set?: RecipeOverrides;
  /** tfjs backend: tensorflow-gpu, tensorflow, wasm or cpu (default: the fastest that loads) */
  backend?: string;
  /** replace an existing checkpoint at `out` (anything else there is always refused) */
  overwrite?: boolean;
  /** continue from the last completed epoch */
  resume?: boolean;
  /** called after every epoch with its metrics row (the row metrics.csv gains) */
  onEpoch?: (row: MetricsRow) => void;
  /** every hook of the training loop (progress bars, logging); `onEpoch` is called as well */
  callbacks?: TrainCallbacks;
  /** stops training at the next batch boundary, keeping the last completed epoch (resume it later) */
  signal?: AbortSignal;
  /** lines the pruning step reports (recipes with a `prune:` section) */
  log?: (line: string) => void;
}

type Accuracies = { train_accuracy: number | null; val_accuracy: number | null; test_accuracy: number | null };

/**
 * What `hepoly train --json` prints: the figures of the checkpoint written. With a `prune:`
 * section that is the pruned, fine-tuned network; the trained one's figures are in `before_prune`.
 */
export type TrainReport = Omit<TrainResult, keyof Accuracies> & Accuracies & { prune?: PruneSummary; before_prune?: Accuracies };

/** `key=value` strings as `hepoly train --set` takes them; strings pass as written, other values as JSON (valid YAML). */
export function overrideStrings(set: RecipeOverrides | undefined): string[] {
  if (!set) return [];
  if (Array.isArray(set)) return set;
  return Object.entries(set).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
}

/**
 * Trains a recipe (a file, or the name of a shipped recipe) into a checkpoint, then prunes and
 * fine-tunes it when the recipe has a `prune:` section. Resolves to the object `--json` prints.
 */
export async function train(recipePath: string, o: TrainOptions = {}): Promise<TrainReport> {
  const { recipe, file } = loadRecipe(recipePath, overrideStrings(o.set));
  // refused before training, not after an hour of it
  if (recipe.prune) checkPrunable(recipe.model, specFromRecipe(recipe.prune), shortPath(file));
  const result: TrainReport = await trainLoop({
    recipe,
    recipeFile: shortPath(file),
    outDir: o.out,
    resume: o.resume,
    overwrite: o.overwrite,
    backend: o.backend,
    signal: o.signal,
    callbacks: withOnEpoch(o.callbacks, o.onEpoch),
  });
  // a resumed run of an already pruned checkpoint keeps its mask and is not pruned again
  if (recipe.prune && !loadCheckpoint(result.checkpoint).prune) {
    const pruned = await pruneCheckpoint({
      checkpoint: result.checkpoint,
      out: result.checkpoint,
      overwrite: true, // the run's own checkpoint, just written
      spec: specFromRecipe(recipe.prune),
      epochs: recipe.prune.epochs,
      backend: o.backend,
      log: o.log,
    });
    Object.assign(result, { ...writtenAccuracies(result.checkpoint), before_prune: pick(result), prune: pruned });
    // the report train wrote describes the network before pruning: write it again
    await reportAfterTraining(result.checkpoint, o.log ?? (() => {}));
  }
  return result;
}

function pick(r: Accuracies): Accuracies {
  return { train_accuracy: r.train_accuracy, val_accuracy: r.val_accuracy, test_accuracy: r.test_accuracy };
}

/** Accuracies of a checkpoint as saved: summary.json (train, test) and the last metrics row (validation). */
function writtenAccuracies(dir: string): Accuracies {
  const ckpt = loadCheckpoint(dir);
  const s = ckpt.summary as Partial<Accuracies>;
  return { train_accuracy: s.train_accuracy ?? null, val_accuracy: ckpt.metrics.at(-1)?.val_accuracy ?? null, test_accuracy: s.test_accuracy ?? null };
}

function withOnEpoch(callbacks: TrainCallbacks | undefined, onEpoch: TrainOptions['onEpoch']): TrainCallbacks | undefined {
  if (!onEpoch) return callbacks;
  return {
    ...callbacks,
    onEpoch(row) {
      callbacks?.onEpoch?.(row);
      onEpoch(row);
    },
  };
}
