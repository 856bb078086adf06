import { resolve } from 'node:path';
import type { Graph, WeightMap } from '../models/graph.js';
import { weightKey } from '../models/graph.js';
import type { ModelConfig, PruneConfig, Recipe } from '../recipe/schema.js';
import { summarize } from '../models/summary.js';
import { loadData } from '../data/index.js';
import { HepolyError } from '../util/errors.js';
import { shortPath } from '../util/paths.js';
import { initBackend } from './backend.js';
import { loadCheckpoint, saveCheckpoint, type Checkpoint, type MetricsRow } from './checkpoint.js';
import { evaluateSplit, evaluateWithRanges } from './evaluate.js';
import { Run, claimCheckpointDir } from './loop.js';
import { learningRate } from './schedule.js';
import { type MaskMap, type PruneRecord, applyMasks, encodeMask, holdPruneMask } from './prune-mask.js';
import { type UnitLayer, incoming, outgoing, removeUnits, unitLayers, unitsRole } from './prune-units.js';

/**
 * Pruning for HE. Two methods:
 * - magnitude: the plain baseline. The smallest |w| of every kernel are zeroed. The zeros are
 *   scattered, so the HE evaluator skips their plaintext products but hardly ever a whole
 *   ciphertext (a unit dies only when all of its outgoing weights are gone).
 * - hepex (HE-PEx: prune, permute, expand): units (neurons / channels) are ranked by the weight
 *   they keep under magnitude pruning at the same sparsity, permuted so the weakest ones are
 *   contiguous, and removed in whole tiles (`tile` units = one ciphertext's worth), so every
 *   pruned weight removes ciphertexts. Expansion restores the weights magnitude pruning took
 *   from the surviving tiles (they cost nothing more), and fine-tuning recovers the accuracy.
 * Both then fine-tune with the mask held fixed.
 */
export type PruneMethod = 'magnitude' | 'hepex';

export interface PruneSpec {
  method: PruneMethod;
  sparsity: number;
  tile: number;
  expand: boolean;
}

export function specFromRecipe(p: PruneConfig): PruneSpec {
  return { method: p.permute ? 'hepex' : 'magnitude', sparsity: p.sparsity, tile: p.tile, expand: p.expand };
}

/** Refuses what cannot be pruned, with the recipe key to change. */
export function checkPrunable(model: ModelConfig, spec: PruneSpec, where: string): void {
  if (model.kind === 'transformer') throw new HepolyError(`${where}: prune: a transformer model cannot be pruned (its HE evaluator packs tokens, not units). Remove the prune section or use an mlp or cnn model`);
  if (model.kind === 'resnet') throw new HepolyError(`${where}: prune: a resnet's residual additions tie the channels of a stage together, so they cannot be removed one by one. Remove the prune section or use an mlp or cnn model`);
  if (!(spec.sparsity >= 0 && spec.sparsity < 1)) throw new HepolyError(`${where}: prune.sparsity: expected a fraction in [0, 1), found ${spec.sparsity}`);
  if (!Number.isInteger(spec.tile) || spec.tile < 1) throw new HepolyError(`${where}: prune.tile: expected a positive integer, found ${spec.tile}`);
}

export interface PruneResult {
  graph: Graph;
  weights: WeightMap;
  masks: MaskMap;
  record: PruneRecord;
}

/** Prunes a copy of the weights (and of the graph, which shrinks when units are removed). */
export function pruneWeights(graphIn: Graph, weightsIn: WeightMap, spec: PruneSpec, source = 'checkpoint'): PruneResult {
  const graph: Graph = JSON.parse(JSON.stringify(graphIn));
  const weights: WeightMap = new Map([...weightsIn].map(([k, w]) => [k, { shape: [...w.shape], data: Float32Array.from(w.data) }]));
  const layers = unitLayers(graph, source);
  const before = Object.fromEntries(layers.map((u) => [u.producer.name, u.units]));
  const kernels = graph.nodes.filter((n) => unitsRole(n)).map((n) => weightKey(n.name, 'kernel'));
  const elementwise = new Map(kernels.map((k) => [k, magnitudeMask(weights.get(k)!.data, spec.sparsity)]));
  let masks: MaskMap;
  if (spec.method === 'magnitude') {
    masks = elementwise;
    applyMasks(weights, masks);
  } else {
    masks = new Map(kernels.map((k) => [k, spec.expand ? new Uint8Array(weights.get(k)!.data.length).fill(1) : Uint8Array.from(elementwise.get(k)!)]));
    let removedAny = false;
    for (const u of layers) {
      const order = unitOrder(weights, elementwise, u);
      const removable = Math.min(Math.floor((spec.sparsity * u.units) / spec.tile) * spec.tile, u.units - Math.min(spec.tile, u.units));
      for (const j of order.slice(u.units - removable)) cutUnit(weights, masks, u, j);
      removedAny ||= removable > 0;
    }
    if (spec.sparsity > 0 && layers.length && !removedAny) {
      const widths = layers.map((u) => u.units);
      const fits = Math.max(1, 2 ** Math.floor(Math.log2(Math.min(...widths) / 2)));
      throw new HepolyError(
        `${source}: tile (--tile / prune.tile) ${spec.tile}: at sparsity ${spec.sparsity} no whole tile of ${spec.tile} units can be removed from layers of ${widths.join(', ')} units, so nothing would be pruned. Use a smaller tile (e.g. ${fits}) or a higher sparsity`,
      );
    }
    applyMasks(weights, masks);
  }
  // any unit left with no outgoing weight is dead: remove it from the graph
  const maskWeights: WeightMap = new Map([...masks].map(([k, m]) => [k, { shape: weights.get(k)!.shape, data: Float32Array.from(m) }]));
  const removed: Record<string, number[]> = {};
  for (const u of layers) {
    const dead = new Set<number>();
    const kernel = weights.get(weightKey(u.consumer.name, 'kernel'))!.data;
    for (let j = 0; j < u.units; j++) if (outgoing(weights, u, j).every((i) => kernel[i] === 0)) dead.add(j);
    if (dead.size === u.units) dead.delete(0);
    removed[u.producer.name] = [...dead].sort((a, b) => a - b);
    removeUnits(graph, [weights, maskWeights], u, dead);
  }
  const finalMasks: MaskMap = new Map([...maskWeights].map(([k, t]) => [k, Uint8Array.from(t.data)]));
  let zeros = 0;
  let total = 0;
  for (const k of kernels) {
    const d = weights.get(k)!.data;
    total += d.length;
    for (const v of d) if (v === 0) zeros++;
  }
  const stored = [...finalMasks].filter(([, m]) => m.some((v) => !v));
  const record: PruneRecord = {
    method: spec.method,
    sparsity: spec.sparsity,
    tile: spec.tile,
    expand: spec.expand,
    units: Object.fromEntries(layers.map((u) => [u.producer.name, { before: before[u.producer.name], after: u.units }])),
    removed,
    weight_sparsity: total ? zeros / total : 0,
    masks: Object.fromEntries(stored.map(([k, m]) => [k, encodeMask(m)])),
  };
  return { graph, weights, masks: new Map(stored), record };
}

/** Keeps the (1 - sparsity) largest |w|; ties at the threshold are broken by position. */
export function magnitudeMask(w: Float32Array, sparsity: number): Uint8Array {
  const mask = new Uint8Array(w.length).fill(1);
  const drop = Math.floor(sparsity * w.length);
  if (!drop) return mask;
  const order = Array.from(w.keys()).sort((a, b) => Math.abs(w[a]) - Math.abs(w[b]));
  for (let i = 0; i < drop; i++) mask[order[i]] = 0;
  return mask;
}

/**
 * The permutation: units sorted by the energy they keep under element-wise magnitude pruning,
 * strongest first, incoming and outgoing sides each normalized by their layer's total (the
 * two kernels have different scales).
 */
function unitOrder(w: WeightMap, elementwise: MaskMap, u: UnitLayer): number[] {
  const side = (key: string, idx: (j: number) => number[]) => {
    const d = w.get(key)!.data;
    const m = elementwise.get(key)!;
    const e = Array.from({ length: u.units }, (_, j) => idx(j).reduce((s, i) => s + (m[i] ? d[i] * d[i] : 0), 0));
    const sum = e.reduce((a, b) => a + b, 0) || 1;
    return e.map((v) => v / sum);
  };
  const inE = side(weightKey(u.producer.name, 'kernel'), (j) => incoming(w, u, j));
  const outE = side(weightKey(u.consumer.name, 'kernel'), (j) => outgoing(w, u, j));
  return Array.from({ length: u.units }, (_, j) => j).sort((a, b) => inE[b] + outE[b] - (inE[a] + outE[a]) || a - b);
}

function cutUnit(w: WeightMap, masks: MaskMap, u: UnitLayer, j: number): void {
  const pin = masks.get(weightKey(u.producer.name, 'kernel'))!;
  for (const i of incoming(w, u, j)) pin[i] = 0;
  const pout = masks.get(weightKey(u.consumer.name, 'kernel'))!;
  for (const i of outgoing(w, u, j)) pout[i] = 0;
}

/** The recipe's model section with the pruned widths, so the checkpoint's recipe matches its graph. */
function prunedModel(model: ModelConfig, graph: Graph): ModelConfig {
  const widths = graph.nodes.flatMap((n) => {
    const role = unitsRole(n);
    return role ? [role.units(n.layer)] : [];
  });
  if (model.kind === 'mlp') return { ...model, hidden: widths.slice(0, -1) };
  if (model.kind === 'cnn') {
    let i = 0;
    const last = model.layers.length - 1;
    return {
      ...model,
      layers: model.layers.map((l, at) => {
        if (l.type === 'conv') return { ...l, filters: widths[i++] };
        if (l.type === 'dense') return at === last ? (i++, l) : { ...l, units: widths[i++] };
        return l;
      }),
    };
  }
  return model;
}

export interface PruneCheckpointOptions {
  checkpoint: string;
  out?: string;
  /** replace an existing checkpoint at `out` (anything else there is always refused) */
  overwrite?: boolean;
  spec: PruneSpec;
  /** fine-tuning epochs with the mask fixed */
  epochs: number;
  /** fine-tuning learning rate (default: a third of the recipe's) */
  lr?: number;
  backend?: string;
  log?: (line: string) => void;
}

export interface PruneSummary {
  checkpoint: string;
  method: PruneMethod;
  sparsity: number;
  units: PruneRecord['units'];
  weight_sparsity: number;
  accuracy_before: number;
  accuracy_pruned: number;
  accuracy_finetuned: number;
  split: string;
}

/** Loads a checkpoint, prunes it, fine-tunes with the mask held, and writes the result. */
export async function pruneCheckpoint(o: PruneCheckpointOptions): Promise<PruneSummary> {
  const log = o.log ?? (() => {});
  const ckpt = loadCheckpoint(o.checkpoint);
  const where = shortPath(ckpt.dir);
  checkPrunable(ckpt.recipe.model, o.spec, where);
  const claim = claimCheckpointDir(o.out ?? `${ckpt.dir}-${o.spec.method}-${Math.round(o.spec.sparsity * 100)}`, { overwrite: o.overwrite, flag: '--out' });
  try {
    return await pruneInto(claim.dir, ckpt, o);
  } finally {
    claim.release();
  }
}

async function pruneInto(outDir: string, ckpt: Checkpoint, o: PruneCheckpointOptions): Promise<PruneSummary> {
  const log = o.log ?? (() => {});
  const where = shortPath(ckpt.dir);
  const backend = await initBackend(o.backend);
  const data = await loadData(ckpt.recipe.data, { seed: ckpt.recipe.seed, recipeFile: `${where}/recipe.yaml`, preprocess: ckpt.preprocess });
  const held = data.test ?? data.validation;
  const split = data.test ? 'test' : 'validation';

  const pruned = pruneWeights(ckpt.graph, ckpt.weights, o.spec, where);
  const recipe: Recipe = {
    ...ckpt.recipe,
    model: prunedModel(ckpt.recipe.model, pruned.graph),
    prune: { target: 'ciphertexts', sparsity: o.spec.sparsity, permute: o.spec.method === 'hepex', expand: o.spec.expand, tile: o.spec.tile, epochs: o.epochs },
    train: {
      ...ckpt.recipe.train,
      epochs: o.epochs,
      early_stopping: undefined,
      schedule: 'cosine',
      optimizer: { ...ckpt.recipe.train.optimizer, lr: o.lr ?? ckpt.recipe.train.optimizer.lr / 3 },
    },
    distill: undefined,
  };
  const units = Object.entries(pruned.record.units).map(([n, u]) => `${n} ${u.before}->${u.after}`).join(', ');
  log(`${o.spec.method} pruning at sparsity ${o.spec.sparsity}: units ${units}; ${(100 * pruned.record.weight_sparsity).toFixed(1)}% of kernel weights zero`);

  const run = new Run(pruned.graph, pruned.weights, recipe, Date.now());
  run.recipeFile = `${where}/recipe.yaml`;
  holdPruneMask(run, pruned.record);
  run.prune = pruned.record;
  try {
    const accBefore = (() => {
      const r = new Run(ckpt.graph, ckpt.weights, ckpt.recipe, Date.now() + 1);
      try {
        return evaluateSplit(ckpt.graph, r.params, held).accuracy;
      } finally {
        r.dispose();
      }
    })();
    const accPruned = evaluateSplit(pruned.graph, run.params, held).accuracy;
    log(`${split} accuracy: ${accBefore.toFixed(4)} before, ${accPruned.toFixed(4)} pruned (before fine-tuning)`);
    const metrics: MetricsRow[] = [];
    for (let epoch = 0; epoch < o.epochs; epoch++) {
      const lr = learningRate(recipe.train, epoch);
      const started = performance.now();
      const r = await run.trainEpoch(data.train, epoch, lr, () => {});
      const val = evaluateSplit(pruned.graph, run.params, data.validation);
      const seconds = (performance.now() - started) / 1000;
      metrics.push({ epoch: epoch + 1, loss: r.loss, accuracy: r.accuracy, val_loss: val.loss, val_accuracy: val.accuracy, lr, samples_per_s: data.train.count / seconds, seconds, ...r.outOfRange });
      log(`fine-tune epoch ${epoch + 1}/${o.epochs}: loss ${r.loss.toFixed(4)} acc ${r.accuracy.toFixed(4)} val_acc ${val.accuracy.toFixed(4)} (${seconds.toFixed(1)} s)`);
    }
    const ranges = evaluateWithRanges(pruned.graph, run.params, data.train);
    const accFinal = evaluateSplit(pruned.graph, run.params, held).accuracy;
    const weights = run.weightMap();
    saveCheckpoint(outDir, {
      graph: pruned.graph,
      weights,
      recipe,
      preprocess: data.preprocess,
      ranges: { input: ranges.input, activations: ranges.activations },
      metrics,
      state: { epochs_done: o.epochs, complete: true, backend, seed: recipe.seed },
      optimizer: await run.optimizerState(),
      summary: { ...summarize(pruned.graph, ranges), train_accuracy: ranges.accuracy, val_accuracy: metrics.at(-1)?.val_accuracy ?? null, test_accuracy: data.test ? accFinal : null },
      prune: pruned.record,
    });
    log(`${split} accuracy after ${o.epochs} fine-tuning epochs: ${accFinal.toFixed(4)} -> ${shortPath(outDir)}`);
    return {
      checkpoint: outDir,
      method: o.spec.method,
      sparsity: o.spec.sparsity,
      units: pruned.record.units,
      weight_sparsity: pruned.record.weight_sparsity,
      accuracy_before: accBefore,
      accuracy_pruned: accPruned,
      accuracy_finetuned: accFinal,
      split,
    };
  } finally {
    run.dispose();
  }
}
