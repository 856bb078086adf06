import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import type { Recipe } from '../../recipe/schema.js';
import { buildGraph } from '../../models/build.js';
import { initWeights } from '../../models/tf-interpreter.js';
import { summarize } from '../../models/summary.js';
import { sortLabels, stratifiedSplit } from '../../data/index.js';
import { saveCheckpoint, type MetricsRow, type RangeStat } from '../../train/checkpoint.js';
import { learningRate } from '../../train/schedule.js';
import type { WeightMap } from '../../models/graph.js';
import { calibrateSigma, privacySpent } from '../accountant.js';
import { sumContext, type Session } from '../session.js';
import { readSum, type SecureSumContext } from '../secure-sum.js';
import { SecureRandom } from '../secure-random.js';
import { averagePrecision, classProbability } from '../metrics.js';
import { bytesF64, f64Bytes } from '../wire.js';
import type { PartyResult, PartyRunOptions } from '../horizontal/party.js';
import { blockSize, GradientKeyHolder } from './he-gradient.js';
import { PsiSender } from './psi.js';
import { joinedDataRecipe, VERTICAL_BACKEND } from './checkpoint-guard.js';
import { clipRows, TopModel } from './split-model.js';
import { batches, chunks, gather, standardize, X_MAX, type LocalColumns, type Plan } from './common.js';

/** The label holder (the payment network) of a vertical run: see vertical/party.ts for the protocol. */

/** What the label holder's steps share. */
interface HolderRun {
  session: Session;
  banks: Session['peers'];
  bankNames: string[];
  bankFeatures: number[];
  ctx: SecureSumContext;
  timeout: { seconds: number };
  plan: Plan;
  y: Int32Array;
  /** its own columns, standardized */
  own: ReturnType<typeof standardize>;
  top: TopModel;
  keys: GradientKeyHolder | null;
  batch: number;
  /** std of the noise on each released weight gradient (0 without DP) */
  noise: number;
  random: SecureRandom;
}

export async function labelHolder(opts: PartyRunOptions, session: Session, local: LocalColumns): Promise<PartyResult> {
  const fed = opts.recipe.federated!;
  const log = opts.log ?? (() => undefined);
  const { run, graph, init, names } = await prepare(opts, session, local);
  const sigmaG = fed.dp ? calibrateSigma(fed.dp, 1, fed.rounds) : 0;
  run.noise = fed.dp ? sigmaG * X_MAX * fed.dp.clip : 0;
  if (fed.dp) log(`dp (labels, towards the banks): noise multiplier ${sigmaG.toFixed(3)} on each released gradient, ${fed.rounds} epochs`);
  const metrics: MetricsRow[] = [];
  const roundSeconds: number[] = [];
  let valZ: Float64Array = new Float64Array(0);
  for (let e = 1; e <= fed.rounds; e++) {
    const lr = learningRate({ ...opts.recipe.train, epochs: fed.rounds }, e - 1);
    const t0 = performance.now();
    const loss = await trainEpoch(run, e, lr, fed.dp?.clip ?? null);
    roundSeconds.push((performance.now() - t0) / 1000);
    const val = await infer(run, run.plan.validation, `val:${e}`);
    valZ = val.z;
    metrics.push({ epoch: e, loss, accuracy: NaN, val_loss: val.loss, val_accuracy: val.accuracy, lr, samples_per_s: run.plan.train.length / roundSeconds[e - 1], seconds: roundSeconds[e - 1], val_auprc: val.auprc });
    log(`epoch ${e}/${fed.rounds}: loss ${loss.toFixed(4)} val_accuracy ${val.accuracy.toFixed(4)} val_auprc ${val.auprc.toFixed(4)} (${roundSeconds[e - 1].toFixed(2)} s)`);
  }
  const test = await infer(run, run.plan.test, 'test');
  const finals = await Promise.all(run.banks.map((b) => session.client.poll('/mailbox', { tag: 'vfl-final' + ':' + b.name }, { ...run.timeout, what: `the final bottom layer of ${b.name}` })));
  const checkpoint = resolve(opts.outDir ?? `checkpoints/${opts.recipe.name}`);
  const bankParts = finals.map((m, i) => ({ name: run.banks[i].name, features: run.banks[i].meta.features as string[], w: bytesF64(m.blobs[0]), mean: Array.from(bytesF64(m.blobs[1])), std: Array.from(bytesF64(m.blobs[2])) }));
  writeVerticalCheckpoint(checkpoint, opts.recipe, graph, init, run.top, bankParts, { features: local.features, mean: run.own.mean, std: run.own.std, labels: names, metrics, valZ });
  const bankEps = finals.map((m) => m.header.epsilon as number | null).filter((v): v is number => v !== null);
  const labelEps = fed.dp ? privacySpent(1, sigmaG, fed.rounds, fed.dp.delta).epsilon : null;
  const last = metrics[metrics.length - 1];
  return {
    party: session.me,
    checkpoint,
    partition: 'vertical',
    parties: session.peers.length,
    rounds: fed.rounds,
    val_accuracy: last.val_accuracy,
    test_accuracy: test.accuracy,
    auprc: test.auprc,
    val_auprc: last.val_auprc,
    epsilon: fed.dp ? Math.max(labelEps!, ...bankEps) : null,
    epsilon_labels: labelEps,
    epsilon_features: bankEps.length ? Math.max(...bankEps) : null,
    delta: fed.dp?.delta ?? null,
    sigma: fed.dp ? sigmaG : null,
    bytes_sent: 0,
    bytes_received: 0,
    seconds: 0,
    round_seconds: roundSeconds,
  };
}

/** The run's rows and plan, the gradient keys, the setup and PSI with every bank, the initial top model. */
async function prepare(opts: PartyRunOptions, session: Session, local: LocalColumns) {
  const { recipe, recipeFile } = opts;
  const fed = recipe.federated!;
  const h = (recipe.model as Extract<Recipe['model'], { kind: 'mlp' }>).hidden[0];
  const banks = session.peers.filter((p) => p.name !== session.me);
  const bankFeatures = banks.map((b) => (b.meta.features as string[]).length);
  const timeout = { seconds: fed.round_timeout };
  const { plan, y, names } = splitRows(recipe, local, h, bankFeatures);
  const fl = local.features.length;
  const keys = fed.aggregation === 'he' ? await GradientKeyHolder.create(bankFeatures.map((f) => blockSize(f, h))) : null;
  await sendSetup(session, banks, plan, local, keys, timeout);
  const graph = buildGraph(recipe.model, [plan.totalFeatures], plan.classes, recipeFile);
  const init = initWeights(graph, recipe.seed);
  const top = new TopModel(fl, h, plan.classes, {
    wl: init.get('dense1/kernel')!.data.subarray(0, fl * h),
    b: init.get('dense1/bias')!.data,
    coeffs: init.get('act1/coeffs')!.data,
    v: init.get('logits/kernel')!.data,
    c: init.get('logits/bias')!.data,
  });
  const run: HolderRun = {
    session,
    banks,
    bankNames: banks.map((b) => b.name),
    bankFeatures,
    ctx: sumContext(session, null, fed.secure_aggregation),
    timeout,
    plan,
    y,
    own: standardize(local.x, plan.train, fl),
    top,
    keys,
    batch: recipe.train.batch,
    noise: 0,
    random: new SecureRandom(),
  };
  return { run, graph, init, names };
}

/** One epoch over the training rows: the banks' summed outputs in, a top step, each bank's gradient out. Returns the mean loss. */
async function trainEpoch(run: HolderRun, e: number, lr: number, clip: number | null): Promise<number> {
  const { top, own, plan, y } = run;
  const h = top.hidden;
  let lossSum = 0;
  for (const [s, rows] of batches(plan, e, run.batch).entries()) {
    const n = rows.length;
    const S = await readSum(run.ctx, `emb:${e}:${s}`, n * h, { members: run.bankNames, audience: [run.session.me] });
    const { loss, cut } = top.step(gather(own.out, top.features, rows), S, Int32Array.from(rows, (i) => y[i]), n, lr);
    lossSum += loss * n;
    if (clip !== null) clipRows(cut, n, h, clip);
    await Promise.all(run.banks.map((b, bi) => returnGradient(run, b.name, `${e}:${s}`, cut, n, run.bankFeatures[bi])));
  }
  return lossSum / plan.train.length;
}

/** Cross-party inference on some rows (validation, test): the banks' summed outputs and the top model. */
async function infer(run: HolderRun, rows: Int32Array, tag: string): Promise<{ accuracy: number; loss: number; auprc: number; z: Float64Array }> {
  const { top, own, plan } = run;
  const logits = new Float64Array(rows.length * plan.classes);
  const z = new Float64Array(rows.length * top.hidden);
  let off = 0;
  for (const [k, c] of chunks(rows, run.batch).entries()) {
    const s = await readSum(run.ctx, `${tag}:${k}`, c.length * top.hidden, { members: run.bankNames, audience: [run.session.me] });
    const f = top.forward(gather(own.out, top.features, c), s, c.length);
    logits.set(f.logits, off * plan.classes);
    z.set(f.z, off * top.hidden);
    off += c.length;
  }
  return { ...scoreLogits(logits, Int32Array.from(rows, (i) => run.y[i]), plan.classes), z };
}

/** The label holder's rows: training, validation and test (half each of the held-out fraction), and the run's plan. */
function splitRows(recipe: Recipe, local: LocalColumns, h: number, bankFeatures: number[]): { plan: Plan; y: Int32Array; names: string[] } {
  const data = recipe.data as Extract<Recipe['data'], { source: 'csv' }>;
  const labelCol = local.table.columns.indexOf(data.label);
  const names = sortLabels(local.table.rows.map((r) => r[labelCol]));
  const y = Int32Array.from(local.table.rows, (r) => names.indexOf(r[labelCol]));
  const first = stratifiedSplit(y, names.length, data.split.validation, recipe.seed);
  const second = stratifiedSplit(Int32Array.from(first.validation, (i) => y[i]), names.length, 0.5, recipe.seed + 1);
  const plan: Plan = {
    train: first.train,
    validation: Int32Array.from(second.train, (k) => first.validation[k]),
    test: Int32Array.from(second.validation, (k) => first.validation[k]),
    shuffleSeed: randomBytes(4).readUInt32LE(0),
    classes: names.length,
    hidden: h,
    totalFeatures: local.features.length + bankFeatures.reduce((a, b) => a + b, 0),
  };
  return { plan, y, names };
}

/**
 * Keys and ID alignment for every bank (psi.ts): the plan, the PSI's first message (the same
 * blinded IDs for every bank) and, sealed per bank, each row's ID position and the PSI's third
 * message; the label holder learns each bank's size, not which of its rows matched.
 */
async function sendSetup(session: Session, banks: Session['peers'], plan: Plan, local: LocalColumns, keys: GradientKeyHolder | null, timeout: { seconds: number }): Promise<void> {
  const psi = new PsiSender(local.table.rows.map((r) => r[local.keyCol]));
  const first = psi.first();
  const header = { ...plan, train: Array.from(plan.train), validation: Array.from(plan.validation), test: Array.from(plan.test) };
  for (const b of banks) {
    const blobs = [first, session.identity.seal(b.publicKey, 'vfl-psi-rows', new Uint8Array(psi.idIndex.buffer))];
    await session.client.post('/mail', { to: b.name, tag: 'vfl-setup', plan: header }, keys ? [...blobs, keys.publicKey, keys.galoisKeys] : blobs);
  }
  for (const b of banks) {
    const answer = await session.client.poll('/mailbox', { tag: `psi:${b.name}` }, { ...timeout, what: `the PSI answer of ${b.name}` });
    await session.client.post('/mail', { to: b.name, tag: 'psi-3' }, [session.identity.seal(b.publicKey, 'vfl-psi-3', psi.third(answer.blobs[0], b.name))]);
  }
}

/**
 * The backward pass towards one bank: Enc(dZ) out, Enc(X_b^T dZ + R) back, decrypted and
 * noised (std run.noise) gradient slots out (plain aggregation: dZ and X_b^T dZ in the clear).
 */
async function returnGradient(run: HolderRun, bank: string, tag: string, cut: Float64Array, rows: number, features: number): Promise<void> {
  const { session, keys } = run;
  const h = run.top.hidden;
  await session.client.post('/mail', { to: bank, tag: `grad:${tag}` }, keys ? keys.encryptCutGradient(cut, rows, h, features) : [f64Bytes(cut)]);
  const m = await session.client.poll('/mailbox', { tag: `gradm:${bank}:${tag}` }, { ...run.timeout, what: `the masked gradient of ${bank}` });
  const g = keys ? keys.decryptMasked(m.blobs[0], features * h) : bytesF64(m.blobs[0]);
  if (run.noise) for (let i = 0; i < g.length; i++) g[i] += run.noise * run.random.normal();
  await session.client.post('/mail', { to: bank, tag: `gradr:${tag}` }, [f64Bytes(g)]);
}

function scoreLogits(logits: Float64Array, y: Int32Array, C: number): { accuracy: number; loss: number; auprc: number } {
  let hits = 0;
  let loss = 0;
  for (let r = 0; r < y.length; r++) {
    let best = 0;
    let max = -Infinity;
    for (let k = 0; k < C; k++) {
      if (logits[r * C + k] > logits[r * C + best]) best = k;
      max = Math.max(max, logits[r * C + k]);
    }
    let z = 0;
    for (let k = 0; k < C; k++) z += Math.exp(logits[r * C + k] - max);
    loss += Math.log(z) + max - logits[r * C + y[r]];
    if (best === y[r]) hits++;
  }
  const auprc = C === 2 ? averagePrecision(classProbability(logits, 2, 1), Array.from(y, (v) => v === 1)) : NaN;
  return { accuracy: hits / y.length, loss: loss / y.length, auprc };
}

function rangeOf(v: Float64Array): RangeStat {
  const s = Float64Array.from(v).sort();
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.round(p * (s.length - 1))))];
  return { min: s[0], max: s[s.length - 1], p001: q(0.001), p999: q(0.999) };
}

/**
 * The assembled model as a normal hepoly checkpoint: an MLP whose first kernel stacks the label
 * holder's and each bank's bottom rows (the banks release their final bottom weights and
 * column statistics to the label holder here, and only here).
 */
function writeVerticalCheckpoint(
  dir: string,
  recipe: Recipe,
  graph: ReturnType<typeof buildGraph>,
  init: WeightMap,
  top: TopModel,
  banks: { name: string; features: string[]; w: Float64Array; mean: number[]; std: number[] }[],
  own: { features: string[]; mean: number[]; std: number[]; labels: string[]; metrics: MetricsRow[]; valZ: Float64Array },
): void {
  const kernel = Float32Array.from([...top.part('wl'), ...banks.flatMap((b) => Array.from(b.w))]);
  const weights: WeightMap = new Map(init);
  weights.set('dense1/kernel', { shape: init.get('dense1/kernel')!.shape, data: kernel });
  weights.set('dense1/bias', { shape: [top.hidden], data: Float32Array.from(top.part('b')) });
  weights.set('act1/coeffs', { shape: [3], data: Float32Array.from(top.part('coeffs')) });
  weights.set('logits/kernel', { shape: init.get('logits/kernel')!.shape, data: Float32Array.from(top.part('v')) });
  weights.set('logits/bias', { shape: [top.classes], data: Float32Array.from(top.part('c')) });
  const features = [...own.features, ...banks.flatMap((b) => b.features.map((f) => `${b.name}.${f}`))];
  const ranges = { input: { min: -X_MAX, max: X_MAX, p001: -X_MAX, p999: X_MAX }, activations: { act1: rangeOf(own.valZ) } };
  const last = own.metrics[own.metrics.length - 1];
  saveCheckpoint(dir, {
    graph,
    weights,
    recipe: joinedDataRecipe(recipe, features),
    preprocess: {
      labels: own.labels,
      inputShape: [features.length],
      features,
      normalize: { kind: 'standard', mean: [...own.mean, ...banks.flatMap((b) => b.mean)], std: [...own.std, ...banks.flatMap((b) => b.std)] },
    },
    ranges,
    metrics: own.metrics,
    state: { epochs_done: own.metrics.length, complete: true, backend: VERTICAL_BACKEND, seed: recipe.seed },
    optimizer: null,
    summary: { ...summarize(graph, ranges), train_accuracy: null, val_accuracy: last?.val_accuracy ?? null, test_accuracy: null, federated: 'vertical' },
  });
}

