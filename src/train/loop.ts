import * as tf from '@tensorflow/tfjs-core';
import { resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { Recipe } from '../recipe/schema.js';
import { buildGraph } from '../models/build.js';
import { type Graph, type GraphNode, type WeightMap, isTrainableParam, weightKey } from '../models/graph.js';
import { opOf } from '../ops/registry.js';
import { forward, initWeights, type ParamMap } from '../models/tf-interpreter.js';
import { summarize } from '../models/summary.js';
import { checkSplitSizes, loadData, type LoadedData, type Split } from '../data/index.js';
import { initBackend } from './backend.js';
import { learningRate } from './schedule.js';
import { evaluateSplit, evaluateWithRanges } from './evaluate.js';
import { inferenceOverflow, refuseInferenceOverflow } from './inference-overflow.js';
import {
  describeCheckpoint,
  loadCheckpoint,
  saveCheckpoint,
  type Checkpoint,
  type MetricsRow,
  type OptimizerState,
  type Ranges,
  type TrainState,
} from './checkpoint.js';
import type { TrainCallbacks, TrainResult } from './callbacks.js';
import { loadTeacher } from './teacher.js';
import { resolvePretrained } from './teacher-path.js';
import { crossEntropy, distillationLoss, outOfRangeFraction, rangePenalty } from './losses.js';
import { HepolyError } from '../util/errors.js';
import { makeRng, permutation } from '../util/rng.js';
import { shortPath } from '../util/paths.js';
import { existsSync } from 'node:fs';
import { claimOutputDir, type OutputClaim } from '../util/output-guard.js';
import { checkFitsInMemory } from './memory.js';
import { holdPruneMask } from './prune-mask.js';
import { reportAfterTraining } from '../report/after-train.js';
import { reestimateBatchnormStats } from './bn-recalibrate.js';

export interface TrainOptions {
  recipe: Recipe;
  recipeFile: string;
  outDir?: string;
  resume?: boolean;
  /** replace an existing checkpoint at outDir (anything else there is always refused) */
  overwrite?: boolean;
  /** aborts between two batches; the last complete epoch stays the checkpoint */
  signal?: AbortSignal;
  backend?: string;
  callbacks?: TrainCallbacks;
}

let runCounter = 0;
/** training batches averaged to re-estimate batchnorm statistics after init_from */
const BN_REESTIMATE_BATCHES = 8;
/** ...and after an inference overflow at the end of training (the median needs a few more) */
const BN_REPAIR_BATCHES = 32;

/** Trains a recipe into a checkpoint directory; one epoch = one atomic checkpoint save. */
export async function train(opts: TrainOptions): Promise<TrainResult> {
  const claim = claimCheckpointDir(opts.outDir ?? `checkpoints/${opts.recipe.name}`, opts);
  try {
    return await trainInto(claim.dir, claim.existing, opts);
  } catch (e) {
    if (e instanceof Interrupted) throw interruptedMessage(e, claim.dir, opts);
    throw e;
  } finally {
    claim.release();
  }
}

/** Thrown by `trainEpoch` when its signal aborts; `train` turns it into the user's message. */
export class Interrupted extends Error {
  constructor(
    readonly epoch: number,
    readonly batch: number,
    readonly batches: number,
  ) {
    super(`interrupted at epoch ${epoch + 1}, batch ${batch}/${batches}`);
  }
}

function interruptedMessage(e: Interrupted, dir: string, opts: TrainOptions): HepolyError {
  const kept = e.epoch === 0 && !opts.resume ? 'no epoch had completed, so no checkpoint was written' : `the checkpoint ${shortPath(dir)} keeps the last complete epoch (${e.epoch} of ${opts.recipe.train.epochs})`;
  const resume = e.epoch === 0 && !opts.resume ? '' : `. Continue it with \`hepoly train ${opts.recipeFile} --resume${opts.outDir ? ` --out ${opts.outDir}` : ''}\``;
  const when = e.batch === 0 ? `before epoch ${e.epoch + 1}` : `during epoch ${e.epoch + 1} (batch ${e.batch}/${e.batches})`;
  return new HepolyError(`interrupted ${when}: ${kept}${resume}`, { exitCode: 130 });
}

/** The output folder, checked and locked before any work: only a checkpoint is ever replaced. */
export function claimCheckpointDir(out: string, o: { outDir?: string; resume?: boolean; overwrite?: boolean; flag?: string }): OutputClaim {
  return claimOutputDir(out, {
    flag: o.flag ?? (o.outDir !== undefined ? '--out' : 'the checkpoint folder (name in the recipe)'),
    kind: 'checkpoint',
    describeOurs: describeCheckpoint,
    replace: !!(o.overwrite || o.resume),
    replaceHint: 'pass --overwrite (or --resume to continue its training)',
  });
}

async function trainInto(outDir: string, existing: boolean, opts: TrainOptions): Promise<TrainResult> {
  const { recipe, recipeFile } = opts;
  const cb = opts.callbacks ?? {};
  const backend = await initBackend(opts.backend);

  let previous: Checkpoint | null = null;
  if (opts.resume) previous = checkResumable(outDir, recipe);
  const replacing = !opts.resume && existing;

  const data = await loadData(recipe.data, { seed: recipe.seed, recipeFile, preprocess: previous?.preprocess });
  const classes = data.preprocess.labels.length;
  if (recipe.data.source !== 'text') checkSplitSizes(data, classes, recipe.data.split.validation, recipeFile);
  const graph = previous?.graph ?? buildGraph(recipe.model, data.preprocess.inputShape, classes, recipeFile);
  checkFitsInMemory(graph, recipe, recipeFile);
  const weights = previous?.weights ?? initWeights(graph, recipe.seed);
  const t = recipe.train;
  const startEpoch = previous?.state.epochs_done ?? 0;
  const metrics: MetricsRow[] = previous ? previous.metrics.slice(0, startEpoch) : [];
  const batches = Math.ceil(data.train.count / t.batch);
  cb.onStart?.({
    backend,
    recipe,
    graph,
    outDir,
    trainCount: data.train.count,
    valCount: data.validation.count,
    testCount: data.test?.count ?? 0,
    startEpoch,
    batchesPerEpoch: batches,
  });

  if (replacing) cb.onMessage?.(`note: --overwrite: the checkpoint ${shortPath(outDir)} is replaced after the first epoch`);
  const teacherLogits = await startingPoint(recipe, recipeFile, graph, weights, data, !previous, cb);

  const run = new Run(graph, weights, recipe, ++runCounter, teacherLogits);
  run.recipeFile = recipeFile;
  if (previous?.prune) holdPruneMask(run, previous.prune);
  try {
    if (previous?.optimizer) await run.restoreOptimizer(previous.optimizer);
    let best = Math.max(-Infinity, ...metrics.map((m) => m.val_accuracy));
    let sinceBest = metrics.length - 1 - metrics.findIndex((m) => m.val_accuracy === best);
    let stoppedEarly = false;
    for (let epoch = startEpoch; epoch < t.epochs; epoch++) {
      // one event-loop turn per epoch, so a signal is seen even when epochs are shorter than
      // trainEpoch's 100 ms yield interval (awaits alone run only microtasks)
      if (opts.signal) await new Promise((r) => setImmediate(r));
      if (opts.signal?.aborted) throw new Interrupted(epoch, 0, batches);
      const lr = learningRate(t, epoch);
      cb.onEpochStart?.(epoch + 1, lr);
      const started = performance.now();
      const { loss, accuracy, outOfRange } = await run.trainEpoch(data.train, epoch, lr, (b, l) => cb.onBatch?.(epoch + 1, b, batches, l), opts.signal);
      const trainSeconds = (performance.now() - started) / 1000;
      const val = evaluateSplit(graph, run.params, data.validation);
      const row: MetricsRow = {
        epoch: epoch + 1,
        loss,
        accuracy,
        val_loss: val.loss,
        val_accuracy: val.accuracy,
        lr,
        samples_per_s: data.train.count / trainSeconds,
        seconds: (performance.now() - started) / 1000,
        ...outOfRange,
      };
      metrics.push(row);
      if (t.early_stopping) {
        if (val.accuracy > best) {
          best = val.accuracy;
          sinceBest = 0;
        } else sinceBest++;
        stoppedEarly = sinceBest >= t.early_stopping.patience && epoch + 1 < t.epochs;
      }
      const done = epoch + 1 === t.epochs || stoppedEarly;
      await run.save(outDir, data, metrics, { epochs_done: epoch + 1, complete: false, backend, seed: recipe.seed, data_root: process.cwd() }, null);
      cb.onEpoch?.(row);
      // test hook: a real kill -9 right after a checkpoint, to check --resume
      if (Number(process.env.HEPOLY_TEST_KILL_AFTER_EPOCH) === epoch + 1) process.kill(process.pid, 'SIGKILL');
      if (done) break;
    }
    if (stoppedEarly) cb.onMessage?.(`early stopping: validation accuracy has not improved for ${t.early_stopping!.patience} epochs`);
    const state: TrainState = { epochs_done: metrics.length, complete: true, backend, seed: recipe.seed, stopped_early: stoppedEarly, data_root: process.cwd() };
    const result = await finishTraining(run, outDir, data, metrics, state, startEpoch, recipeFile, cb);
    cb.onEnd?.(result);
    return result;
  } finally {
    run.dispose();
  }
}

/**
 * tfjs's Adam keeps beta^t as a float32 product, multiplied once per step, but `setWeights`
 * recomputes it with `pow`, which rounds differently: a resumed run then drifts from the 6th
 * digit. Redoing the same float32 products (Math.fround of each product is exactly one f32
 * multiplication) makes --resume bit-identical to an uninterrupted run.
 */
function restoreAdamPowers(optimizer: tf.Optimizer): void {
  const adam = optimizer as unknown as { beta1?: number; beta2?: number; accBeta1?: tf.Variable; accBeta2?: tf.Variable; iterations_?: number };
  if (adam.accBeta1 === undefined || adam.accBeta2 === undefined || adam.iterations_ === undefined) return;
  const steps = adam.iterations_;
  const power = (beta: number) => {
    const b = Math.fround(beta);
    let acc = b;
    for (let i = 0; i < steps; i++) acc = Math.fround(acc * b);
    return acc;
  };
  adam.accBeta1.assign(tf.scalar(power(adam.beta1!)));
  adam.accBeta2.assign(tf.scalar(power(adam.beta2!)));
}

/**
 * What a run starts from, said in its first lines: the init_from weights (a fresh run only), the
 * teacher's logits (null without distillation), then the batchnorm statistics re-estimated for
 * the copied weights.
 */
async function startingPoint(recipe: Recipe, recipeFile: string, graph: Graph, weights: WeightMap, data: LoadedData, fresh: boolean, cb: TrainCallbacks): Promise<Float32Array | null> {
  if (fresh && recipe.init_from) cb.onMessage?.(initFrom(weights, recipe.init_from, recipeFile));
  const teacherLogits = recipe.distill ? await distillationTargets(recipe, recipeFile, graph, data, cb) : null;
  if (fresh && recipe.init_from) reestimateAfterInit(graph, weights, data, recipe.train.batch, cb);
  return teacherLogits;
}

/** What the final checkpoint records of the training split. */
interface TrainMeasure {
  ranges: Ranges;
  trainAccuracy: number;
}

/**
 * The final checkpoint (ranges and train/test accuracy measured), repaired once if it overflows
 * in eval mode, and its report; refused (exit 3) if it still overflows.
 */
async function finishTraining(
  run: Run,
  outDir: string,
  data: LoadedData,
  metrics: MetricsRow[],
  state: TrainState,
  startEpoch: number,
  recipeFile: string,
  cb: TrainCallbacks,
): Promise<TrainResult> {
  let measured = run.measureOnTrain(data.train);
  const lastValLoss = () => (data.validation.count ? metrics[metrics.length - 1]?.val_loss ?? null : null);
  const overflow = inferenceOverflow(measured.ranges, lastValLoss());
  const repair = overflow !== null && run.hasMovingStatistics;
  if (repair) measured = reestimateAfterOverflow(run, overflow, data, metrics, cb);
  const final = await run.save(outDir, data, metrics, state, measured);
  const result: TrainResult = {
    checkpoint: outDir,
    epochs: metrics.length,
    train_accuracy: final.trainAccuracy,
    val_accuracy: metrics[metrics.length - 1]?.val_accuracy ?? NaN,
    test_accuracy: final.testAccuracy,
    samples_per_s: mean(metrics.slice(startEpoch).map((m) => m.samples_per_s)),
    backend: state.backend,
  };
  await reportAfterTraining(outDir, (text) => cb.onMessage?.(text));
  refuseInferenceOverflow(inferenceOverflow(final.ranges, lastValLoss()), result, recipeFile, repair);
  return result;
}

/**
 * The network overflowed in eval mode with the moving statistics training left: one late batch
 * with an outlier sample can inflate a moving variance that stacked quadratics then amplify
 * (resnet-poly distilled from the full-data teacher, docs/results.md). They are re-estimated for
 * the final weights, and the last epoch's validation figures and the training-split figures are
 * measured again, so that they describe the checkpoint written.
 */
function reestimateAfterOverflow(run: Run, overflow: string, data: LoadedData, metrics: MetricsRow[], cb: TrainCallbacks): TrainMeasure {
  const set = run.reestimateMovingStatistics(data.train, BN_REPAIR_BATCHES);
  const last = metrics[metrics.length - 1];
  let change = '';
  if (last && data.validation.count) {
    const val = evaluateSplit(run.graph, run.params, data.validation);
    change = `; the last epoch's val_acc ${last.val_accuracy.toFixed(4)} -> ${val.accuracy.toFixed(4)}`;
    last.val_loss = val.loss;
    last.val_accuracy = val.accuracy;
  }
  const samples = Math.min(data.train.count, BN_REPAIR_BATCHES * run.batch);
  cb.onMessage?.(`the trained model overflowed at inference (${overflow}): re-estimated the moving statistics of ${set} batchnorm layers on ${samples} training samples (per-channel median over batches)${change}`);
  return run.measureOnTrain(data.train);
}

/** The copied moving statistics are the source network's (e.g. a ReLU teacher's), not this one's. */
function reestimateAfterInit(graph: Graph, weights: WeightMap, data: LoadedData, batch: number, cb: TrainCallbacks): void {
  const set = reestimateBatchnormStats(graph, weights, data.train, batch, BN_REESTIMATE_BATCHES);
  if (set) cb.onMessage?.(`init_from: re-estimated the moving statistics of ${set} batchnorm layers on ${Math.min(data.train.count, BN_REESTIMATE_BATCHES * batch)} training samples`);
}

/** The teacher's logits over the training set, computed once before the first epoch. */
async function distillationTargets(recipe: Recipe, recipeFile: string, graph: Graph, data: LoadedData, cb: TrainCallbacks): Promise<Float32Array> {
  const distill = recipe.distill!;
  const teacher = await loadTeacher(distill, graph.inputShape, data.preprocess, recipeFile);
  cb.onMessage?.(teacher.source);
  let logits: Float32Array;
  try {
    logits = await teacher.logits(data.train.x, data.train.count);
  } finally {
    teacher.dispose();
  }
  const agree = argmaxAgreement(logits, data.train.y, data.preprocess.labels.length);
  cb.onMessage?.(`distilling from ${teacher.description}: T=${distill.temperature}, alpha=${distill.alpha}, teacher train accuracy ${agree.toFixed(4)}`);
  return logits;
}

function mean(xs: number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
}

function argmaxAgreement(logits: Float32Array, y: Int32Array, classes: number): number {
  let hits = 0;
  for (let i = 0; i < y.length; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[i * classes + c] > logits[i * classes + best]) best = c;
    if (best === y[i]) hits++;
  }
  return y.length ? hits / y.length : NaN;
}

/** Copies every weight of a compatible checkpoint (same name and shape) into `weights`. */
function initFrom(weights: WeightMap, ref: string, recipeFile: string): string {
  const { path: dir, note } = resolvePretrained(ref, 'init_from');
  if (!existsSync(dir)) {
    throw new HepolyError(`${recipeFile}: init_from: ${ref} not found. Train that checkpoint first (hepoly train RECIPE; recipes/resnet-poly.yaml starts from recipes/resnet-relu.yaml) or remove init_from`);
  }
  const src = loadCheckpoint(dir);
  const copied: string[] = [];
  const mismatched: string[] = [];
  for (const [key, w] of weights) {
    const s = src.weights.get(key);
    if (!s) continue;
    if (s.shape.join(',') !== w.shape.join(',')) mismatched.push(`${key} [${s.shape}] vs [${w.shape}]`);
    else {
      w.data.set(s.data);
      copied.push(key);
    }
  }
  if (mismatched.length) {
    throw new HepolyError(`${recipeFile}: init_from: ${shortPath(src.dir)} is not compatible: ${mismatched.slice(0, 3).join('; ')}${mismatched.length > 3 ? ` (+${mismatched.length - 3} more)` : ''}. Use a checkpoint of the same architecture`);
  }
  if (!copied.length) {
    throw new HepolyError(`${recipeFile}: init_from: ${shortPath(src.dir)} shares no layer with this model. Use a checkpoint of the same architecture`);
  }
  const fresh = [...weights.keys()].filter((k) => !copied.includes(k));
  return `${note}: copied ${copied.length} weight tensors${fresh.length ? `, kept ${fresh.length} fresh (${fresh.slice(0, 4).join(', ')}${fresh.length > 4 ? ', ...' : ''})` : ''}`;
}

function checkResumable(outDir: string, recipe: Recipe): Checkpoint | null {
  if (!existsSync(outDir)) {
    throw new HepolyError(`--resume: no checkpoint at ${shortPath(outDir)} to resume. Drop --resume to start a new run, or pass --out pointing at the checkpoint`);
  }
  const ckpt = loadCheckpoint(outDir);
  const a = { ...ckpt.recipe, train: { ...ckpt.recipe.train, epochs: 0 } };
  const b = { ...recipe, train: { ...recipe.train, epochs: 0 } };
  if (!isDeepStrictEqual(JSON.parse(JSON.stringify(a)), JSON.parse(JSON.stringify(b)))) {
    const diff = firstDifference(a, b);
    throw new HepolyError(
      `--resume: the recipe differs from the one ${shortPath(outDir)} was trained with (at ${diff}). Resume with the same recipe (only train.epochs may change), or drop --resume to start over`,
    );
  }
  if (ckpt.state.epochs_done >= recipe.train.epochs && ckpt.state.complete) {
    throw new HepolyError(`--resume: ${shortPath(outDir)} already finished ${ckpt.state.epochs_done} epochs. Raise train.epochs (e.g. --set train.epochs=${ckpt.state.epochs_done + 10}) to train further`);
  }
  if (!ckpt.optimizer) throw new HepolyError(`--resume: ${shortPath(outDir)} holds no optimizer state. Start a new run without --resume`);
  return ckpt;
}

function firstDifference(a: unknown, b: unknown, path = ''): string {
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const d = firstDifference((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], path ? `${path}.${k}` : k);
      if (d) return d;
    }
    return '';
  }
  return JSON.stringify(a) === JSON.stringify(b) ? '' : path || '(top level)';
}

/**
 * The tensors of one training run: variables, optimizer, and the step function. Exported for
 * bench/train-speed.ts, which times `trainEpoch` (the trainer's own step code) on random data.
 */
export class Run {
  /** named in error messages */
  recipeFile = 'the recipe';
  /** runs after every optimizer step (pruning holds its mask here) */
  afterStep: (() => void) | null = null;
  /** saved as prune.json with every checkpoint */
  prune: unknown = null;
  readonly params: ParamMap = new Map();
  private readonly trainable: { key: string; node: GraphNode; variable: tf.Variable }[] = [];
  private readonly optimizer: tf.Optimizer;
  /** layers whose moving statistics follow the batch statistics (the op's movingStatistics face) */
  private readonly bnNodes: { name: string; mean: string; variance: string; momentum: number }[];
  private readonly xBuf: Float32Array;
  private readonly yBuf: Int32Array;

  constructor(
    readonly graph: Graph,
    weights: WeightMap,
    private readonly recipe: Recipe,
    id: number,
    private readonly teacherLogits: Float32Array | null = null,
  ) {
    for (const node of graph.nodes) {
      for (const [key, w] of weights) {
        if (!key.startsWith(`${node.name}/`)) continue;
        const param = key.slice(node.name.length + 1);
        const trainable = isTrainableParam(node, param);
        const v = tf.variable(tf.tensor(w.data, w.shape), trainable, `run${id}/${key}`);
        this.params.set(key, v);
        if (trainable) this.trainable.push({ key, node, variable: v });
      }
    }
    const o = recipe.train.optimizer;
    this.optimizer = o.kind === 'adam' ? tf.train.adam(o.lr, o.beta1, o.beta2) : tf.train.momentum(o.lr, o.momentum);
    this.bnNodes = graph.nodes.flatMap((n) => {
      const m = opOf(n).movingStatistics;
      return m ? [{ name: n.name, mean: m.mean, variance: m.variance, momentum: m.momentum(n.layer) }] : [];
    });
    const per = graph.inputShape.reduce((a, b) => a * b, 1);
    this.xBuf = new Float32Array(recipe.train.batch * per);
    this.yBuf = new Int32Array(recipe.train.batch);
    this.tBuf = new Float32Array(recipe.train.batch * graph.classes);
    // range regularization keeps each op's recorded input range (activations) where its polynomial fits
    this.actNodes = graph.nodes.filter((n) => opOf(n).rangeProbes(n.layer).includes('input')).map((n) => n.name);
    this.penalties = graph.nodes.flatMap((n) => {
      const term = opOf(n).trainingPenalty?.(n.layer);
      return term ? [{ node: n.name, term }] : [];
    });
  }

  private readonly tBuf: Float32Array;
  private readonly actNodes: string[];
  /** loss terms of the layers' own (an op's trainingPenalty face) */
  private readonly penalties: { node: string; term: (probed: (what: string) => tf.Tensor) => tf.Scalar }[];

  /**
   * One epoch. It yields to the event loop every ~100 ms so that a signal (Ctrl-C) can abort
   * it between two batches, never inside a checkpoint write.
   */
  async trainEpoch(
    train: Split,
    epoch: number,
    lr: number,
    onBatch: (b: number, loss: number) => void,
    signal?: AbortSignal,
  ): Promise<{ loss: number; accuracy: number; outOfRange: Record<string, number> }> {
    (this.optimizer as unknown as { learningRate: number }).learningRate = lr;
    const { batch, clip, max_loss: maxLoss } = this.recipe.train;
    const per = this.graph.inputShape.reduce((a, b) => a * b, 1);
    const order = permutation(train.count, makeRng(this.recipe.seed, `shuffle:${epoch}`));
    let lossSum = 0;
    let correctSum: tf.Tensor = tf.scalar(0);
    // per activation layer: sum over batches of (fraction out of range * batch size)
    let oorSum: tf.Tensor | null = null;
    const C = this.graph.classes;
    const batches = Math.ceil(train.count / batch);
    let lastYield = performance.now();
    for (let b = 0; b < batches; b++) {
      const start = b * batch;
      const n = Math.min(batch, train.count - start);
      for (let i = 0; i < n; i++) {
        const src = order[start + i];
        this.xBuf.set(train.x.subarray(src * per, (src + 1) * per), i * per);
        this.yBuf[i] = train.y[src];
        if (this.teacherLogits) this.tBuf.set(this.teacherLogits.subarray(src * C, (src + 1) * C), i * C);
      }
      const { loss, correct, oor } = this.step(
        this.xBuf.subarray(0, n * per),
        this.yBuf.subarray(0, n),
        this.teacherLogits ? this.tBuf.subarray(0, n * C) : null,
        n,
        clip,
      );
      const next = tf.add(correctSum, correct);
      correctSum.dispose();
      correct.dispose();
      correctSum = next;
      if (oor) {
        const acc: tf.Tensor = oorSum ? tf.add(oorSum, tf.mul(oor, n)) : tf.mul(oor, n);
        oorSum?.dispose();
        oor.dispose();
        oorSum = acc;
      }
      if (!Number.isFinite(loss) || loss > maxLoss) {
        correctSum.dispose();
        (oorSum as tf.Tensor | null)?.dispose();
        const what = Number.isNaN(loss) ? 'NaN' : !Number.isFinite(loss) ? 'infinite' : `exploding (${loss.toExponential(2)} > train.max_loss ${maxLoss})`;
        throw new HepolyError(
          `${this.recipeFile}: training diverged: the loss became ${what} at epoch ${epoch + 1}, batch ${b + 1}/${batches}. Try a lower train.optimizer.lr (now ${lr.toPrecision(3)}), ${clip === null ? 'gradient clipping (train.clip: 1.0)' : `tighter gradient clipping (train.clip: ${clip} now, try ${clip / 5})`}, ${this.recipe.range ? 'a larger range.weight' : 'range regularization (range: {bound: 8, weight: 0.001})'} or normalized inputs (data.normalize: standard); polynomial activations grow fast outside their range. The last completed checkpoint was left as it was`,
          { exitCode: 3 },
        );
      }
      lossSum += loss * n;
      onBatch(b + 1, loss);
      if (signal && performance.now() - lastYield > 100) {
        await new Promise((r) => setImmediate(r));
        lastYield = performance.now();
        if (signal.aborted) {
          correctSum.dispose();
          (oorSum as tf.Tensor | null)?.dispose();
          throw new Interrupted(epoch, b + 1, batches);
        }
      }
    }
    const correct = correctSum.dataSync()[0];
    correctSum.dispose();
    const outOfRange: Record<string, number> = {};
    if (oorSum) {
      const fr = (oorSum as tf.Tensor).dataSync();
      this.actNodes.forEach((name, i) => (outOfRange[`out_of_range_${name}`] = fr[i] / train.count));
      (oorSum as tf.Tensor).dispose();
    }
    return { loss: lossSum / train.count, accuracy: correct / train.count, outOfRange };
  }

  /** One optimizer step; returns the batch loss and the number of correct predictions (a tensor, read once per epoch). */
  private step(
    x: Float32Array,
    y: Int32Array,
    teacher: Float32Array | null,
    n: number,
    clip: number | null,
  ): { loss: number; correct: tf.Tensor; oor: tf.Tensor | null } {
    let correct: tf.Tensor | null = null;
    let oor: tf.Tensor | null = null;
    const { distill, range } = this.recipe;
    const captured = new Map<string, { mean: tf.Tensor; variance: tf.Tensor }>();
    const lossValue = tf.tidy(() => {
      const xb = tf.tensor(x, [n, ...this.graph.inputShape]);
      const yb = tf.tensor1d(y, 'int32');
      const vars = this.trainable.map((t) => t.variable);
      const { value, grads } = tf.variableGrads(() => {
        const out = forward(this.graph, this.params, xb, { training: true, recordActivationInputs: !!range || this.penalties.length > 0 });
        for (const [name, s] of out.batchStats) captured.set(name, { mean: tf.keep(s.mean), variance: tf.keep(s.variance) });
        correct = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(out.logits, 1), yb), 'float32')));
        let loss =
          distill && teacher
            ? distillationLoss(out.logits, tf.tensor2d(teacher, [n, this.graph.classes]), yb, this.graph.classes, distill.temperature, distill.alpha)
            : crossEntropy(out.logits, yb, this.graph.classes);
        if (range && this.actNodes.length) {
          const acts = this.actNodes.map((a) => out.activationInputs.get(a)!);
          oor = tf.keep(tf.stack(acts.map((a) => outOfRangeFraction(a, range.bound))));
          if (range.weight > 0) loss = tf.add(loss, tf.mul(tf.addN(acts.map((a) => rangePenalty(a, range.bound))), range.weight)) as tf.Scalar;
        }
        for (const { node, term } of this.penalties) {
          loss = tf.add(loss, term((what) => out.activationInputs.get(`${node}/${what}`)!)) as tf.Scalar;
        }
        return loss;
      }, vars);
      let named: tf.NamedTensorMap = grads;
      if (clip !== null) {
        // global-norm clipping on device: scale = clip / max(norm, clip)
        const norm = tf.sqrt(tf.addN(vars.map((v) => tf.sum(tf.square(grads[v.name])))));
        const scale = tf.div(clip, tf.maximum(norm, clip));
        named = Object.fromEntries(vars.map((v) => [v.name, tf.mul(grads[v.name], scale)]));
      }
      this.optimizer.applyGradients(named);
      return value.dataSync()[0];
    });
    for (const node of this.bnNodes) {
      const s = captured.get(node.name);
      if (!s) continue;
      const m = node.momentum;
      tf.tidy(() => {
        const mm = this.params.get(weightKey(node.name, node.mean)) as tf.Variable;
        const mv = this.params.get(weightKey(node.name, node.variance)) as tf.Variable;
        mm.assign(tf.add(tf.mul(mm, m), tf.mul(s.mean, 1 - m)));
        // unbiased batch variance, as Keras and PyTorch keep in the running estimate
        const unbias = n > 1 ? n / (n - 1) : 1;
        mv.assign(tf.add(tf.mul(mv, m), tf.mul(s.variance, (1 - m) * unbias)));
      });
      s.mean.dispose();
      s.variance.dispose();
    }
    this.afterStep?.();
    return { loss: lossValue, correct: correct!, oor };
  }

  get hasMovingStatistics(): boolean {
    return this.bnNodes.length > 0;
  }

  get batch(): number {
    return this.recipe.train.batch;
  }

  /** Sets the moving statistics to the ones re-estimated on `train` for the weights as they are. */
  reestimateMovingStatistics(train: Split, batches: number): number {
    const weights = this.weightMap();
    const set = reestimateBatchnormStats(this.graph, weights, train, this.batch, batches);
    tf.tidy(() => {
      for (const node of this.bnNodes) {
        for (const key of [weightKey(node.name, node.mean), weightKey(node.name, node.variance)]) {
          const w = weights.get(key)!;
          (this.params.get(key) as tf.Variable).assign(tf.tensor(w.data, w.shape));
        }
      }
    });
    return set;
  }

  weightMap(): WeightMap {
    const out: WeightMap = new Map();
    for (const [k, t] of this.params) out.set(k, { shape: t.shape.slice(), data: Float32Array.from(t.dataSync() as Float32Array) });
    return out;
  }

  async optimizerState(): Promise<OptimizerState> {
    const named = await this.optimizer.getWeights();
    return {
      names: named.map((w) => w.name),
      shapes: named.map((w) => w.tensor.shape.slice()),
      data: named.map((w) => Float32Array.from(w.tensor.dataSync() as Float32Array)),
    };
  }

  async restoreOptimizer(s: OptimizerState): Promise<void> {
    await this.optimizer.setWeights(s.names.map((name, i) => ({ name, tensor: tf.tensor(s.data[i], s.shapes[i]) })));
    restoreAdamPowers(this.optimizer);
  }

  /** The final checkpoint's activation ranges and accuracy on the training split (eval mode). */
  measureOnTrain(train: Split): TrainMeasure {
    const r = evaluateWithRanges(this.graph, this.params, train);
    return { ranges: { input: r.input, activations: r.activations }, trainAccuracy: r.accuracy };
  }

  /** Writes the checkpoint; the final save (given `measureOnTrain`'s figures) also measures test accuracy. */
  async save(outDir: string, data: LoadedData, metrics: MetricsRow[], state: TrainState, final: TrainMeasure | null): Promise<{ trainAccuracy: number; testAccuracy: number | null; ranges: Ranges | null }> {
    const ranges = final?.ranges ?? null;
    const trainAccuracy = final ? final.trainAccuracy : metrics[metrics.length - 1]?.accuracy ?? NaN;
    const testAccuracy = final && data.test ? evaluateSplit(this.graph, this.params, data.test).accuracy : null;
    const summary = {
      ...summarize(this.graph, ranges),
      train_accuracy: trainAccuracy,
      val_accuracy: metrics[metrics.length - 1]?.val_accuracy ?? null,
      test_accuracy: testAccuracy,
    };
    saveCheckpoint(outDir, {
      graph: this.graph,
      weights: this.weightMap(),
      recipe: this.recipe,
      preprocess: data.preprocess,
      ranges,
      metrics,
      state,
      optimizer: await this.optimizerState(),
      summary,
      prune: this.prune,
    });
    return { trainAccuracy, testAccuracy, ranges };
  }

  dispose(): void {
    for (const t of this.params.values()) t.dispose();
    this.optimizer.dispose();
  }
}
