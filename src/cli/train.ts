import { loadRecipe, shortPath } from '../recipe/load.js';
import { train } from '../train/loop.js';
import { consoleCallbacks } from './progress.js';
import { abortOnSignals } from './interrupt.js';
import { checkPrunable, pruneCheckpoint, specFromRecipe } from '../train/prune.js';
import { loadCheckpoint } from '../train/checkpoint.js';
import { reportAfterTraining } from '../report/after-train.js';

export interface TrainArgs {
  recipe: string;
  set?: string[];
  out?: string;
  resume?: boolean;
  overwrite?: boolean;
  json?: boolean;
  backend?: string;
}

export async function runTrain(a: TrainArgs): Promise<void> {
  const { recipe, file } = loadRecipe(a.recipe, a.set ?? []);
  // refused before training, not after an hour of it
  if (recipe.prune) checkPrunable(recipe.model, specFromRecipe(recipe.prune), shortPath(file));
  const interrupt = abortOnSignals();
  const result = await train({
    recipe,
    recipeFile: shortPath(file),
    outDir: a.out,
    resume: a.resume,
    overwrite: a.overwrite,
    backend: a.backend,
    signal: interrupt.signal,
    callbacks: consoleCallbacks((l) => console.log(l), !!process.stdout.isTTY && !a.json),
  }).finally(interrupt.dispose);
  // a resumed run of an already pruned checkpoint keeps its mask and is not pruned again
  if (recipe.prune && !loadCheckpoint(result.checkpoint).prune) {
    const pruned = await pruneCheckpoint({
      checkpoint: result.checkpoint,
      out: result.checkpoint,
      overwrite: true, // the run's own checkpoint, just written
      spec: specFromRecipe(recipe.prune),
      epochs: recipe.prune.epochs,
      backend: a.backend,
      log: (l) => console.log(l),
    });
    // the top-level figures describe the checkpoint written (pruned, fine-tuned); the trained network's move to before_prune
    Object.assign(result, { ...writtenAccuracies(result.checkpoint), before_prune: pick(result), prune: pruned });
    await reportAfterTraining(result.checkpoint, (l) => console.log(l));
  }
  if (a.json) console.log(JSON.stringify(result));
}

type Accuracies = { train_accuracy: number | null; val_accuracy: number | null; test_accuracy: number | null };

function pick(r: Accuracies): Accuracies {
  return { train_accuracy: r.train_accuracy, val_accuracy: r.val_accuracy, test_accuracy: r.test_accuracy };
}

/** Accuracies of a checkpoint as saved: summary.json (train, test) and the last metrics row (validation). */
function writtenAccuracies(dir: string): Accuracies {
  const ckpt = loadCheckpoint(dir);
  const s = ckpt.summary as Partial<Accuracies>;
  return { train_accuracy: s.train_accuracy ?? null, val_accuracy: ckpt.metrics.at(-1)?.val_accuracy ?? null, test_accuracy: s.test_accuracy ?? null };
}
