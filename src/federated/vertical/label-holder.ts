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
import { readSum } from '../secure-sum.js';
import { SecureRandom } from '../secure-random.js';
import { averagePrecision, classProbability } from '../metrics.js';
import { bytesF64, f64Bytes } from '../wire.js';
import type { PartyResult, PartyRunOptions } from '../horizontal/party.js';
import { blockSize, GradientKeyHolder } from './he-gradient.js';
import { idToken } from './psi.js';
import { clipRows, TopModel } from './split-model.js';
import { batches, chunks, gather, standardize, X_MAX, type LocalColumns, type Plan } from './common.js';

/** The label holder (the payment network) of a vertical run: see vertical/party.ts for the protocol. */

export async function labelHolder(opts: PartyRunOptions, session: Session, local: LocalColumns): Promise<PartyResult> {
  const { recipe, recipeFile } = opts;
  const fed = recipe.federated!;
  const log = opts.log ?? (() => undefined);
  const model = recipe.model as Extract<Recipe['model'], { kind: 'mlp' }>;
  const h = model.hidden[0];
  const banks = session.peers.filter((p) => p.name !== session.me);
  const bankNames = banks.map((b) => b.name);
  const bankFeatures = banks.map((b) => (b.meta.features as string[]).length);
  const ctx = sumContext(session, null, fed.secure_aggregation);
  const timeout = { seconds: fed.round_timeout };

  const { plan, y, names } = splitRows(recipe, local, h, bankFeatures);
  const fl = local.features.length;
  const own = standardize(local.x, plan.train, fl);

  const holder = fed.aggregation === 'he' ? await GradientKeyHolder.create(bankFeatures.map((f) => blockSize(f, h))) : null;
  await sendSetup(session, banks, plan, local, holder);

  const graph = buildGraph(recipe.model, [plan.totalFeatures], plan.classes, recipeFile);
  const init = initWeights(graph, recipe.seed);
  const top = new TopModel(fl, h, plan.classes, {
    wl: init.get('dense1/kernel')!.data.subarray(0, fl * h),
    b: init.get('dense1/bias')!.data,
    coeffs: init.get('act1/coeffs')!.data,
    v: init.get('logits/kernel')!.data,
    c: init.get('logits/bias')!.data,
  });
  const dp = fed.dp;
  const sigmaG = dp ? calibrateSigma(dp, 1, fed.rounds) : 0;
  if (dp) log(`dp (labels, towards the banks): noise multiplier ${sigmaG.toFixed(3)} on each released gradient, ${fed.rounds} epochs`);
  const random = new SecureRandom();
  const metrics: MetricsRow[] = [];
  const roundSeconds: number[] = [];
  const B = recipe.train.batch;
  let lastZ: Float64Array = new Float64Array(0);

  const infer = async (rows: Int32Array, tag: string) => {
    const logits = new Float64Array(rows.length * plan.classes);
    const zs: Float64Array[] = [];
    let off = 0;
    for (const [k, c] of chunks(rows, B).entries()) {
      const s = await readSum(ctx, `${tag}:${k}`, c.length * h, { members: bankNames, audience: [session.me] });
      const f = top.forward(gather(own.out, fl, c), s, c.length);
      logits.set(f.logits, off * plan.classes);
      zs.push(f.z);
      off += c.length;
    }
    lastZ = Float64Array.from(zs.flatMap((z) => Array.from(z)));
    return scoreLogits(logits, Int32Array.from(rows, (i) => y[i]), plan.classes);
  };

  for (let e = 1; e <= fed.rounds; e++) {
    const t0 = performance.now();
    const lr = learningRate({ ...recipe.train, epochs: fed.rounds }, e - 1);
    let lossSum = 0;
    for (const [s, rows] of batches(plan, e, B).entries()) {
      const n = rows.length;
      const S = await readSum(ctx, `emb:${e}:${s}`, n * h, { members: bankNames, audience: [session.me] });
      const { loss, cut } = top.step(gather(own.out, fl, rows), S, Int32Array.from(rows, (i) => y[i]), n, lr);
      lossSum += loss * n;
      if (dp) clipRows(cut, n, h, dp.clip);
      const noise = dp ? sigmaG * X_MAX * dp.clip : 0;
      await Promise.all(banks.map((b, bi) => returnGradient(session, b.name, `${e}:${s}`, cut, n, h, bankFeatures[bi], holder, noise, random, timeout)));
    }
    roundSeconds.push((performance.now() - t0) / 1000);
    const val = await infer(plan.validation, `val:${e}`);
    metrics.push({ epoch: e, loss: lossSum / plan.train.length, accuracy: NaN, val_loss: val.loss, val_accuracy: val.accuracy, lr, samples_per_s: plan.train.length / roundSeconds[e - 1], seconds: roundSeconds[e - 1], val_auprc: val.auprc });
    log(`epoch ${e}/${fed.rounds}: loss ${(lossSum / plan.train.length).toFixed(4)} val_accuracy ${val.accuracy.toFixed(4)} val_auprc ${val.auprc.toFixed(4)} (${roundSeconds[e - 1].toFixed(2)} s)`);
  }
  const valZ = lastZ;
  const test = await infer(plan.test, 'test');
  const finals = await Promise.all(banks.map((b) => session.client.poll('/mailbox', { tag: 'vfl-final' + ':' + b.name }, { ...timeout, what: `the final bottom layer of ${b.name}` })));
  const checkpoint = resolve(opts.outDir ?? `checkpoints/${recipe.name}`);
  writeVerticalCheckpoint(checkpoint, recipe, graph, init, top, finals.map((m, i) => ({ name: banks[i].name, features: banks[i].meta.features as string[], w: bytesF64(m.blobs[0]), mean: Array.from(bytesF64(m.blobs[1])), std: Array.from(bytesF64(m.blobs[2])) })), {
    features: local.features,
    mean: own.mean,
    std: own.std,
    labels: names,
    metrics,
    valZ,
  });
  const bankEps = finals.map((m) => m.header.epsilon as number | null).filter((v): v is number => v !== null);
  const labelEps = dp ? privacySpent(1, sigmaG, fed.rounds, dp.delta).epsilon : null;
  return {
    party: session.me,
    checkpoint,
    partition: 'vertical',
    parties: session.peers.length,
    rounds: fed.rounds,
    val_accuracy: metrics[metrics.length - 1].val_accuracy,
    test_accuracy: test.accuracy,
    auprc: test.auprc,
    val_auprc: metrics[metrics.length - 1].val_auprc,
    epsilon: dp ? Math.max(labelEps!, ...bankEps) : null,
    epsilon_labels: labelEps,
    epsilon_features: bankEps.length ? Math.max(...bankEps) : null,
    delta: dp?.delta ?? null,
    sigma: dp ? sigmaG : null,
    bytes_sent: 0,
    bytes_received: 0,
    seconds: 0,
    round_seconds: roundSeconds,
  };
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

/** ID alignment and keys for every bank: the salt sealed per bank; the tokens, plan and public keys in the clear. */
async function sendSetup(session: Session, banks: Session['peers'], plan: Plan, local: LocalColumns, holder: GradientKeyHolder | null): Promise<void> {
  const salt = randomBytes(32);
  const tokens = local.table.rows.map((r) => idToken(salt, r[local.keyCol]));
  const header = { ...plan, train: Array.from(plan.train), validation: Array.from(plan.validation), test: Array.from(plan.test) };
  for (const b of banks) {
    const blobs = [session.identity.seal(b.publicKey, 'vfl-salt', salt), new TextEncoder().encode(tokens.join('\n'))];
    if (holder) blobs.push(holder.publicKey, holder.galoisKeys);
    await session.client.post('/mail', { to: b.name, tag: 'vfl-setup', plan: header }, blobs);
  }
}

/**
 * The backward pass towards one bank: Enc(dZ) out, Enc(X_b^T dZ + R) back, decrypted and
 * noised (std `noise`) gradient slots out (plain aggregation: dZ and X_b^T dZ in the clear).
 */
async function returnGradient(
  session: Session,
  bank: string,
  tag: string,
  cut: Float64Array,
  rows: number,
  h: number,
  features: number,
  holder: GradientKeyHolder | null,
  noise: number,
  random: SecureRandom,
  timeout: { seconds: number },
): Promise<void> {
  await session.client.post('/mail', { to: bank, tag: `grad:${tag}` }, holder ? holder.encryptCutGradient(cut, rows, h, features) : [f64Bytes(cut)]);
  const m = await session.client.poll('/mailbox', { tag: `gradm:${bank}:${tag}` }, { ...timeout, what: `the masked gradient of ${bank}` });
  const g = holder ? holder.decryptMasked(m.blobs[0], features * h) : bytesF64(m.blobs[0]);
  if (noise) for (let i = 0; i < g.length; i++) g[i] += noise * random.normal();
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
    recipe,
    preprocess: {
      labels: own.labels,
      inputShape: [features.length],
      features,
      normalize: { kind: 'standard', mean: [...own.mean, ...banks.flatMap((b) => b.mean)], std: [...own.std, ...banks.flatMap((b) => b.std)] },
    },
    ranges,
    metrics: own.metrics,
    state: { epochs_done: own.metrics.length, complete: true, backend: 'federated-vertical', seed: recipe.seed },
    optimizer: null,
    summary: { ...summarize(graph, ranges), train_accuracy: null, val_accuracy: last?.val_accuracy ?? null, test_accuracy: null, federated: 'vertical' },
  });
}

