import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Recipe } from '../../recipe/schema.js';
import type { WeightMap } from '../../models/graph.js';
import { buildGraph } from '../../models/build.js';
import { opOf } from '../../ops/registry.js';
import { initWeights } from '../../models/tf-interpreter.js';
import { summarize } from '../../models/summary.js';
import { sortLabels, stratifiedSplit, type NormalizeStats, type Split } from '../../data/index.js';
import { initBackend } from '../../train/backend.js';
import { saveCheckpoint, type MetricsRow } from '../../train/checkpoint.js';
import { evaluateSplit, evaluateWithRanges, toParams } from '../../train/evaluate.js';
import { HepolyError } from '../../util/errors.js';
import { calibrateSigma, privacySpent } from '../accountant.js';
import { checkColumns, numericColumns, readPartyTable } from '../party-data.js';
import { joinRun, keyCeremony, refuseToJoin, reportFailure, sumContext, type Session } from '../session.js';
import { secureSum, type SecureSumContext } from '../secure-sum.js';
import { DpSgd, FedAvg, type Strategy } from './strategies.js';

/**
 * One horizontal party: joins, takes part in the key ceremony, computes the federation's
 * normalization statistics by a secure sum, then runs the rounds of its strategy (FedAvg, or
 * distributed DP-SGD when `dp` is set). The first party in federated.parties (the key holder)
 * writes the final model as a normal hepoly checkpoint.
 */
export interface PartyRunOptions {
  recipe: Recipe;
  recipeFile: string;
  name: string;
  coordinator: string;
  outDir?: string;
  backend?: string;
  log?: (line: string) => void;
}

export interface PartyResult {
  party: string;
  checkpoint: string | null;
  partition: 'horizontal' | 'vertical';
  parties: number;
  rounds: number;
  val_accuracy: number;
  epsilon: number | null;
  delta: number | null;
  sigma: number | null;
  bytes_sent: number;
  bytes_received: number;
  seconds: number;
  round_seconds: number[];
  /** vertical (label holder): measured by cross-party inference on its held-out rows */
  test_accuracy?: number;
  auprc?: number;
  val_auprc?: number;
  /** vertical: the budget spent towards the banks (labels) and towards the label holder (bank features) */
  epsilon_labels?: number | null;
  epsilon_features?: number | null;
}

interface LocalData {
  features: string[];
  x: Float32Array;
  rawLabels: string[];
}

function readLocal(opts: PartyRunOptions, index: number): LocalData {
  const { recipe, recipeFile } = opts;
  const party = recipe.federated!.parties[index];
  const field = `federated.parties[${index}].path`;
  const t = readPartyTable(party.path, field, recipeFile);
  if (recipe.data.source !== 'csv') throw new HepolyError(`${recipeFile}: data.source: horizontal federated training reads CSV parties, found ${recipe.data.source}. Use data.source: csv`);
  const label = recipe.data.label;
  let expected: string[];
  let from: string;
  if (recipe.data.features) {
    expected = [...recipe.data.features, label];
    from = 'data.features plus data.label';
  } else {
    expected = readPartyTable(recipe.data.path, 'data.path', recipeFile).columns;
    from = `data.path (${recipe.data.path})`;
  }
  checkColumns(t, expected, field, recipeFile, from);
  const features = expected.filter((c) => c !== label);
  const li = t.columns.indexOf(label);
  return { features, x: numericColumns(t, features, field, recipeFile), rawLabels: t.rows.map((r) => r[li]) };
}

export async function runHorizontalParty(opts: PartyRunOptions): Promise<PartyResult> {
  const started = performance.now();
  const { recipe, recipeFile, name } = opts;
  const fed = recipe.federated!;
  const log = opts.log ?? (() => undefined);
  const index = fed.parties.findIndex((p) => p.name === name);
  if (index < 0) throw new HepolyError(`--name ${name}: not a party of ${recipeFile} (federated.parties: ${fed.parties.map((p) => p.name).join(', ')}). Pass one of those names`, { exitCode: 2 });
  const backend = await initBackend(opts.backend);
  let local: LocalData;
  let session: Session;
  try {
    local = readLocal(opts, index);
    checkDpFits(opts, local.features.length);
  } catch (e) {
    // tell the others why this party is not coming, then stop
    await refuseToJoin(opts.coordinator, name, e);
    throw e;
  }
  session = await joinRun(opts.coordinator, name, { labels: [...new Set(local.rawLabels)], features: local.features });
  try {
    return await trainParty(opts, session, local, index, backend, started, log);
  } catch (e) {
    await reportFailure(session, e);
    throw e;
  }
}

async function trainParty(opts: PartyRunOptions, session: Session, local: LocalData, index: number, backend: string, started: number, log: (l: string) => void): Promise<PartyResult> {
  const { recipe, recipeFile, name } = opts;
  const fed = recipe.federated!;
  const data = recipe.data as Extract<Recipe['data'], { source: 'csv' }>;
  const holder = fed.parties[0].name;
  const classes = sortLabels(session.peers.flatMap((p) => (p.meta.labels as string[]) ?? []));
  const crypto = fed.aggregation === 'he' ? await keyCeremony(session, holder, fed.he.poly_modulus_degree) : null;
  const ctx = sumContext(session, crypto, fed.secure_aggregation);
  const F = local.features.length;
  const y = Int32Array.from(local.rawLabels, (l) => classes.indexOf(l));
  const { train: trainIdx, validation: valIdx } = stratifiedSplit(y, classes.length, data.split.validation, recipe.seed);
  const take = (idx: Int32Array): Split => {
    const x = new Float32Array(idx.length * F);
    idx.forEach((i, r) => x.set(local.x.subarray(i * F, (i + 1) * F), r * F));
    return { x, y: Int32Array.from(idx, (i) => y[i]), count: idx.length };
  };
  const train = take(trainIdx);
  const validation = take(valIdx);
  const { normalize, totalRecords } = await federatedNormalization(ctx, train, F, data.normalize, recipeFile);
  for (const s of [train, validation]) applyStats(s.x, F, normalize);
  log(`party ${name}: ${train.count} training rows, ${validation.count} validation rows; federation: ${totalRecords} training rows, ${classes.length} classes`);

  const graph = buildGraph(recipe.model, [F], classes.length, recipeFile);
  let global: WeightMap = initWeights(graph, recipe.seed);
  const strategy = makeStrategy(opts, graph, train, totalRecords);
  const metrics: MetricsRow[] = [];
  const roundSeconds: number[] = [];
  for (let r = 1; r <= fed.rounds; r++) {
    const t0 = performance.now();
    const contribution = strategy.contribution(global, r);
    const sum = (await secureSum(ctx, `round-${r}`, (p) => dump(name, r, contribution(p))))!;
    dump(`${name}-sum`, r, sum);
    global = strategy.apply(global, sum, r);
    roundSeconds.push((performance.now() - t0) / 1000);
    const m = await federatedMetrics(ctx, `metrics-${r}`, graph, global, train, validation, !!fed.dp);
    metrics.push({ epoch: r, loss: m.trainLoss, accuracy: m.trainAccuracy, val_loss: m.valLoss, val_accuracy: m.valAccuracy, lr: NaN, samples_per_s: totalRecords / roundSeconds[r - 1], seconds: roundSeconds[r - 1] });
    log(`round ${r}/${fed.rounds}: val_accuracy ${m.valAccuracy.toFixed(4)} val_loss ${m.valLoss.toFixed(4)} (${roundSeconds[r - 1].toFixed(2)} s)`);
  }
  const spent = strategy instanceof DpSgd ? privacySpent(strategy.q, strategy.sigma, fed.rounds, fed.dp!.delta) : null;
  let checkpoint: string | null = null;
  if (name === holder) {
    checkpoint = resolve(opts.outDir ?? `checkpoints/${recipe.name}`);
    writeFederatedCheckpoint(checkpoint, recipe, graph, global, train, metrics, { labels: classes, inputShape: [F], features: local.features, normalize }, backend);
  }
  await session.client.post('/done', {});
  return {
    party: name,
    checkpoint,
    partition: 'horizontal',
    parties: session.peers.length,
    rounds: fed.rounds,
    val_accuracy: metrics[metrics.length - 1]?.val_accuracy ?? NaN,
    epsilon: spent?.epsilon ?? null,
    delta: spent?.delta ?? null,
    sigma: strategy instanceof DpSgd ? strategy.sigma : null,
    bytes_sent: session.client.bytesSent,
    bytes_received: session.client.bytesReceived,
    seconds: (performance.now() - started) / 1000,
    round_seconds: roundSeconds,
  };
}

/**
 * Before joining, so that every party stops at once: a layer that normalizes with batch
 * statistics makes one record's clipped gradient depend on its batch, which DP-SGD forbids.
 */
function checkDpFits(opts: PartyRunOptions, features: number): void {
  if (!opts.recipe.federated!.dp) return;
  // the class count does not change which layers the model has
  const graph = buildGraph(opts.recipe.model, [features], 2, opts.recipeFile);
  if (graph.nodes.some((n) => opOf(n).movingStatistics)) {
    throw new HepolyError(`${opts.recipeFile}: federated.dp: per-record gradient clipping cannot be combined with batchnorm (a record's gradient would depend on its batch). Set model.batchnorm: false, or remove federated.dp`);
  }
}

function makeStrategy(opts: PartyRunOptions, graph: ReturnType<typeof buildGraph>, train: Split, totalRecords: number): Strategy {
  const { recipe, recipeFile } = opts;
  const fed = recipe.federated!;
  if (!fed.dp) return new FedAvg(graph, recipe, recipeFile, train, fed.local_epochs, fed.rounds);
  const q = fed.dp.sample_rate ?? Math.min(1, recipe.train.batch / totalRecords);
  const sigma = calibrateSigma(fed.dp, q, fed.rounds);
  opts.log?.(`dp: epsilon ${fed.dp.epsilon}, delta ${fed.dp.delta}: noise multiplier ${sigma.toFixed(3)} at sampling rate ${q.toFixed(4)} over ${fed.rounds} rounds`);
  return new DpSgd(graph, recipe, train, q, sigma, fed.dp.clip, totalRecords, fed.rounds);
}

/** Global mean and standard deviation of every feature from a secure sum of [n, sum x, sum x^2]. */
async function federatedNormalization(ctx: SecureSumContext, train: Split, F: number, cfg: unknown, recipeFile: string): Promise<{ normalize: NormalizeStats; totalRecords: number }> {
  if (cfg !== 'standard' && cfg !== 'none') {
    throw new HepolyError(`${recipeFile}: data.normalize: federated training computes normalization by a secure sum, which gives standard (mean/std) or none, found ${JSON.stringify(cfg)}. Set data.normalize: standard`);
  }
  const v = new Float64Array(1 + 2 * F);
  v[0] = train.count;
  for (let r = 0; r < train.count; r++) {
    for (let j = 0; j < F; j++) {
      const x = train.x[r * F + j];
      v[1 + j] += x;
      v[1 + F + j] += x * x;
    }
  }
  const s = (await secureSum(ctx, 'stats', v, { wide: true }))!;
  const n = Math.round(s[0]);
  if (cfg === 'none') return { normalize: { kind: 'none' }, totalRecords: n };
  const mean = Array.from({ length: F }, (_, j) => s[1 + j] / n);
  const std = Array.from({ length: F }, (_, j) => {
    const d = Math.sqrt(Math.max(0, s[1 + F + j] / n - mean[j] ** 2));
    return d > 0 ? d : 1;
  });
  return { normalize: { kind: 'standard', mean, std }, totalRecords: n };
}

function applyStats(x: Float32Array, F: number, s: NormalizeStats): void {
  if (s.kind !== 'standard') return;
  for (let i = 0; i < x.length; i++) x[i] = (x[i] - s.mean[i % F]) / s.std[i % F];
}

/** Federation-wide accuracy and loss by a secure sum; train metrics are left out under DP (they would be an unaccounted release). */
async function federatedMetrics(ctx: SecureSumContext, id: string, graph: ReturnType<typeof buildGraph>, weights: WeightMap, train: Split, validation: Split, dp: boolean) {
  const params = toParams(weights);
  try {
    const v = evaluateSplit(graph, params, validation);
    const t = dp ? { accuracy: 0, loss: 0, samples: 0 } : evaluateSplit(graph, params, train);
    const part = [v.accuracy * v.samples || 0, v.samples, v.loss * v.samples || 0, t.accuracy * t.samples || 0, t.samples, t.loss * t.samples || 0];
    const s = (await secureSum(ctx, id, part, { wide: true }))!;
    return { valAccuracy: s[0] / s[1], valLoss: s[2] / s[1], trainAccuracy: dp ? NaN : s[3] / s[4], trainLoss: dp ? NaN : s[5] / s[4] };
  } finally {
    for (const t of params.values()) t.dispose();
  }
}

function writeFederatedCheckpoint(dir: string, recipe: Recipe, graph: ReturnType<typeof buildGraph>, weights: WeightMap, train: Split, metrics: MetricsRow[], preprocess: { labels: string[]; inputShape: number[]; features: string[]; normalize: NormalizeStats }, backend: string): void {
  const params = toParams(weights);
  try {
    // activation ranges from the key holder's own training rows: the ranges the encrypted evaluator needs
    const r = evaluateWithRanges(graph, params, train);
    const ranges = { input: r.input, activations: r.activations };
    const last = metrics[metrics.length - 1];
    saveCheckpoint(dir, {
      graph,
      weights,
      recipe,
      preprocess,
      ranges,
      metrics,
      state: { epochs_done: metrics.length, complete: true, backend, seed: recipe.seed },
      optimizer: null,
      summary: { ...summarize(graph, ranges), train_accuracy: last?.accuracy ?? null, val_accuracy: last?.val_accuracy ?? null, test_accuracy: null, federated: true },
    });
  } finally {
    for (const t of params.values()) t.dispose();
  }
}

/** Test hook: HEPOLY_FED_DUMP_DIR receives each contribution and each decrypted sum, to compare HE with plain FedAvg. */
function dump(name: string, round: number, v: Float64Array): Float64Array {
  const dir = process.env.HEPOLY_FED_DUMP_DIR;
  if (dir) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${name}-round-${round}.f64`), new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
  }
  return v;
}

