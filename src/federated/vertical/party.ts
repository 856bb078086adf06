import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import type { Recipe } from '../../recipe/schema.js';
import type { PartyConfig } from '../schema.js';
import { buildGraph } from '../../models/build.js';
import { initWeights } from '../../models/tf-interpreter.js';
import { summarize } from '../../models/summary.js';
import { sortLabels, stratifiedSplit } from '../../data/index.js';
import { saveCheckpoint, type MetricsRow, type RangeStat } from '../../train/checkpoint.js';
import { learningRate } from '../../train/schedule.js';
import type { WeightMap } from '../../models/graph.js';
import { HepolyError } from '../../util/errors.js';
import { makeRng, permutation } from '../../util/rng.js';
import { calibrateSigma, privacySpent } from '../accountant.js';
import { numericColumns, readPartyTable, type PartyTable } from '../party-data.js';
import { joinRun, reportFailure, sumContext, type Session } from '../session.js';
import { readSum, secureSum, type SecureSumContext } from '../secure-sum.js';
import { SecureRandom } from '../secure-random.js';
import { averagePrecision, classProbability } from '../metrics.js';
import { bytesF64, f64Bytes } from '../wire.js';
import type { PartyResult, PartyRunOptions } from '../horizontal/party.js';
import { blockSize, GradientEvaluator, GradientKeyHolder } from './he-gradient.js';
import { alignRows, idToken } from './psi.js';
import { BottomModel, clipRows, TopModel } from './split-model.js';

/**
 * Vertical federated training (PV4FAD's setting): the label holder (the payment network) holds
 * the labels, its own columns and the CKKS secret key; each bank holds columns of the same
 * rows, matched by ID (psi.ts). Per batch: every bank sends its bottom output X_b W_b, clipped
 * and noised, pairwise-masked among the banks, so the label holder reads only their sum; the
 * label holder runs the top model and returns the gradient at the cut encrypted, the bank turns
 * it into its masked weight gradient under HE (he-gradient.ts), the label holder decrypts and
 * noises that, the bank unmasks it. Inference (validation, test) runs the same forward path.
 */

/** Banks clip each (normalized) row to this L2 norm under DP: the label-DP sensitivity |x| |g|. */
const X_MAX = 3;

interface LocalColumns {
  party: PartyConfig;
  index: number;
  table: PartyTable;
  features: string[];
  keyCol: number;
  x: Float32Array;
}

function readColumns(opts: PartyRunOptions, index: number): LocalColumns {
  const { recipe, recipeFile } = opts;
  const fed = recipe.federated!;
  const holders = fed.parties.filter((p) => p.label);
  if (holders.length !== 1) {
    throw new HepolyError(`${recipeFile}: federated.parties: a vertical run needs exactly one party with label: true (the label holder), found ${holders.length}. Mark the party that holds ${recipe.data.source === 'csv' ? JSON.stringify(recipe.data.label) : 'the label'}`);
  }
  if (recipe.model.kind !== 'mlp' || recipe.model.hidden.length !== 1 || recipe.model.batchnorm) {
    throw new HepolyError(`${recipeFile}: model: a vertical split network is an mlp with one hidden layer (bottom maps, then the activation and the classifier at the label holder) and no batchnorm. Set model: {kind: mlp, hidden: [8], batchnorm: false}`);
  }
  const party = fed.parties[index];
  const field = `federated.parties[${index}]`;
  const table = readPartyTable(party.path, `${field}.path`, recipeFile);
  if (!party.key) throw new HepolyError(`${recipeFile}: ${field}.key: a vertical party names its ID column. Add key: COLUMN (one of ${table.columns.join(', ')})`);
  const keyCol = table.columns.indexOf(party.key);
  if (keyCol < 0) throw new HepolyError(`${table.file} (${field}.path in ${recipeFile}): no ID column ${JSON.stringify(party.key)} (${field}.key). Set key to one of ${table.columns.join(', ')}`);
  const label = recipe.data.source === 'csv' ? recipe.data.label : '';
  if (party.label && !table.columns.includes(label)) throw new HepolyError(`${table.file} (${field}.path in ${recipeFile}): the label holder has no label column ${JSON.stringify(label)} (data.label). Set data.label to its label column`);
  const features = party.features ?? table.columns.filter((c) => c !== party.key && c !== label);
  const missing = features.filter((f) => !table.columns.includes(f));
  if (missing.length) {
    throw new HepolyError(`${table.file} (${field}.features in ${recipeFile}): its columns differ from the recipe's: no column ${missing.map((m) => JSON.stringify(m)).join(', ')}. Set ${field}.features to columns of the file (${table.columns.join(', ')})`);
  }
  return { party, index, table, features, keyCol, x: numericColumns(table, features, `${field}.path`, recipeFile) };
}

export async function runVerticalParty(opts: PartyRunOptions): Promise<PartyResult> {
  const started = performance.now();
  const fed = opts.recipe.federated!;
  const index = fed.parties.findIndex((p) => p.name === opts.name);
  if (index < 0) throw new HepolyError(`--name ${opts.name}: not a party of ${opts.recipeFile} (federated.parties: ${fed.parties.map((p) => p.name).join(', ')}). Pass one of those names`, { exitCode: 2 });
  let local: LocalColumns;
  try {
    local = readColumns(opts, index);
  } catch (e) {
    const s = await joinRun(opts.coordinator, opts.name, {}).catch(() => null);
    if (s) await reportFailure(s, e);
    throw e;
  }
  const session = await joinRun(opts.coordinator, opts.name, { features: local.features, label: local.party.label });
  try {
    const r = local.party.label ? await labelHolder(opts, session, local) : await bank(opts, session, local);
    await session.client.post('/done', {});
    return { ...r, bytes_sent: session.client.bytesSent, bytes_received: session.client.bytesReceived, seconds: (performance.now() - started) / 1000 };
  } catch (e) {
    await reportFailure(session, e);
    throw e;
  }
}

/** Standardizes the columns with this party's own statistics (they never leave it, except into the final checkpoint). */
function standardize(x: Float32Array, rows: Int32Array | null, F: number): { mean: number[]; std: number[]; out: Float64Array } {
  const n = rows ? rows.length : x.length / F;
  const at = (r: number) => (rows ? rows[r] : r);
  const mean = new Array<number>(F).fill(0);
  const sq = new Array<number>(F).fill(0);
  for (let r = 0; r < n; r++) for (let j = 0; j < F; j++) mean[j] += x[at(r) * F + j] / n;
  for (let r = 0; r < n; r++) for (let j = 0; j < F; j++) sq[j] += (x[at(r) * F + j] - mean[j]) ** 2 / n;
  const std = sq.map((v) => (v > 0 ? Math.sqrt(v) : 1));
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = (x[i] - mean[i % F]) / std[i % F];
  return { mean, std, out };
}

function gather(x: Float64Array, F: number, rows: ArrayLike<number>): Float64Array {
  const out = new Float64Array(rows.length * F);
  for (let r = 0; r < rows.length; r++) out.set(x.subarray(rows[r] * F, rows[r] * F + F), r * F);
  return out;
}

interface Plan {
  train: Int32Array;
  validation: Int32Array;
  test: Int32Array;
  shuffleSeed: number;
  classes: number;
  hidden: number;
  totalFeatures: number;
}

function batches(plan: Plan, epoch: number, batch: number): Int32Array[] {
  const order = permutation(plan.train.length, makeRng(plan.shuffleSeed, `vfl-epoch:${epoch}`));
  const out: Int32Array[] = [];
  for (let s = 0; s < order.length; s += batch) out.push(Int32Array.from(order.subarray(s, s + batch), (k) => plan.train[k]));
  return out;
}

function chunks(rows: Int32Array, batch: number): Int32Array[] {
  const out: Int32Array[] = [];
  for (let s = 0; s < rows.length; s += batch) out.push(rows.subarray(s, s + batch));
  return out;
}

// ---------------------------------------------------------------------------------------------
// The label holder

async function labelHolder(opts: PartyRunOptions, session: Session, local: LocalColumns): Promise<PartyResult> {
  const { recipe, recipeFile } = opts;
  const fed = recipe.federated!;
  const log = opts.log ?? (() => undefined);
  const data = recipe.data as Extract<Recipe['data'], { source: 'csv' }>;
  const model = recipe.model as Extract<Recipe['model'], { kind: 'mlp' }>;
  const h = model.hidden[0];
  const banks = session.peers.filter((p) => p.name !== session.me);
  const bankNames = banks.map((b) => b.name);
  const bankFeatures = banks.map((b) => (b.meta.features as string[]).length);
  const ctx = sumContext(session, null, fed.secure_aggregation);
  const timeout = { seconds: fed.round_timeout };

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
  const fl = local.features.length;
  const own = standardize(local.x, plan.train, fl);

  // ID alignment and keys: the salt sealed per bank, the tokens and public keys in the clear
  const salt = randomBytes(32);
  const tokens = local.table.rows.map((r) => idToken(salt, r[local.keyCol]));
  const holder = fed.aggregation === 'he' ? await GradientKeyHolder.create(bankFeatures.map((f) => blockSize(f, h))) : null;
  const header = { ...plan, train: Array.from(plan.train), validation: Array.from(plan.validation), test: Array.from(plan.test) };
  for (const b of banks) {
    const blobs = [session.identity.seal(b.publicKey, 'vfl-salt', salt), new TextEncoder().encode(tokens.join('\n'))];
    if (holder) blobs.push(holder.publicKey, holder.galoisKeys);
    await session.client.post('/mail', { to: b.name, tag: 'vfl-setup', plan: header }, blobs);
  }

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
      await Promise.all(
        banks.map(async (b, bi) => {
          const fb = bankFeatures[bi];
          const tag = `${e}:${s}`;
          await session.client.post('/mail', { to: b.name, tag: `grad:${tag}` }, holder ? holder.encryptCutGradient(cut, n, h, fb) : [f64Bytes(cut)]);
          const m = await session.client.poll('/mailbox', { tag: `gradm:${b.name}:${tag}` }, { ...timeout, what: `the masked gradient of ${b.name}` });
          const g = holder ? holder.decryptMasked(m.blobs[0], fb * h) : bytesF64(m.blobs[0]);
          if (dp) for (let i = 0; i < g.length; i++) g[i] += sigmaG * X_MAX * dp.clip * random.normal();
          await session.client.post('/mail', { to: b.name, tag: `gradr:${tag}` }, [f64Bytes(g)]);
        }),
      );
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

// ---------------------------------------------------------------------------------------------
// A bank

async function bank(opts: PartyRunOptions, session: Session, local: LocalColumns): Promise<PartyResult> {
  const { recipe, recipeFile } = opts;
  const fed = recipe.federated!;
  const log = opts.log ?? (() => undefined);
  const holderName = fed.parties.find((p) => p.label)!.name;
  const holderPeer = session.peers.find((p) => p.name === holderName)!;
  const bankNames = session.peers.filter((p) => p.name !== holderName).map((p) => p.name);
  const ctx: SecureSumContext = sumContext(session, null, fed.secure_aggregation);
  const timeout = { seconds: fed.round_timeout };
  const setup = await session.client.poll('/mailbox', { tag: 'vfl-setup' }, { ...timeout, what: `the setup message of ${holderName}` });
  const raw = setup.header.plan as Plan & { train: number[]; validation: number[]; test: number[] };
  const plan: Plan = { ...raw, train: Int32Array.from(raw.train), validation: Int32Array.from(raw.validation), test: Int32Array.from(raw.test) };
  const salt = session.identity.open(holderPeer.publicKey, 'vfl-salt', setup.blobs[0]);
  const tokens = new TextDecoder().decode(setup.blobs[1]).split('\n');
  const evaluator = fed.aggregation === 'he' ? await GradientEvaluator.create(setup.blobs[2], setup.blobs[3]) : null;

  const ids = local.table.rows.map((r) => r[local.keyCol]);
  const align = alignRows(tokens, salt, ids, { file: local.table.file, field: `federated.parties[${local.index}].key`, recipeFile });
  const fb = local.features.length;
  const h = plan.hidden;
  const norm = standardize(local.x, null, fb);
  if (fed.dp) clipRows(norm.out, ids.length, fb, X_MAX);
  // per label-holder row: this bank's row, or zeros where it does not hold the ID
  const xAligned = new Float64Array(tokens.length * fb);
  align.rowOf.forEach((r, i) => {
    if (r >= 0) xAligned.set(norm.out.subarray(r * fb, (r + 1) * fb), i * fb);
  });
  log(`party ${session.me}: ${align.matched} of the label holder's ${tokens.length} rows have an account here (at most ${align.maxMultiplicity} rows per account)`);

  // initial bottom rows: this bank's slice of the assembled model's first kernel
  const offset = session.peers.filter((p, i) => i < session.peers.findIndex((q) => q.name === session.me) && p.name !== holderName).reduce((a, p) => a + (p.meta.features as string[]).length, 0) + (holderPeer.meta.features as string[]).length;
  const graph = buildGraph(recipe.model, [plan.totalFeatures], plan.classes, recipeFile);
  const kernel = initWeights(graph, recipe.seed).get('dense1/kernel')!.data;
  const bottom = new BottomModel(fb, h, Float64Array.from(kernel.subarray(offset * h, (offset + fb) * h)));
  const dp = fed.dp;
  // each account's row is released once per epoch per label-holder row that names it
  const sigmaE = dp ? calibrateSigma(dp, 1, align.maxMultiplicity * fed.rounds) : 0;
  if (dp) log(`dp (features, towards ${holderName}): noise multiplier ${sigmaE.toFixed(3)} on each bottom output over ${align.maxMultiplicity * fed.rounds} releases per account`);
  const random = new SecureRandom();
  const embed = (rows: Int32Array) => {
    const e = bottom.embed(gather(xAligned, fb, rows), rows.length);
    if (dp) {
      clipRows(e, rows.length, h, dp.clip);
      const std = (sigmaE * dp.clip) / Math.sqrt(bankNames.length);
      for (let i = 0; i < e.length; i++) e[i] += std * random.normal();
    }
    return e;
  };
  const contribute = (id: string, rows: Int32Array) => secureSum(ctx, id, embed(rows), { members: bankNames, audience: [holderName] });
  const B = recipe.train.batch;
  const roundSeconds: number[] = [];
  for (let e = 1; e <= fed.rounds; e++) {
    const t0 = performance.now();
    const lr = learningRate({ ...recipe.train, epochs: fed.rounds }, e - 1);
    for (const [s, rows] of batches(plan, e, B).entries()) {
      const n = rows.length;
      const tag = `${e}:${s}`;
      await contribute(`emb:${tag}`, rows);
      const m = await session.client.poll('/mailbox', { tag: `grad:${tag}` }, { ...timeout, what: `the encrypted gradient of ${holderName}` });
      const x = gather(xAligned, fb, rows);
      let grad: Float64Array;
      if (evaluator) {
        const { ciphertext, mask } = evaluator.maskedProduct(m.blobs, x, n, fb, h);
        await session.client.post('/mail', { to: holderName, tag: `gradm:${session.me}:${tag}` }, [ciphertext]);
        const r = await session.client.poll('/mailbox', { tag: `gradr:${tag}` }, { ...timeout, what: `the gradient of ${holderName}` });
        grad = bytesF64(r.blobs[0]).map((v, i) => v - mask[i]);
      } else {
        const cut = bytesF64(m.blobs[0]);
        const g = new Float64Array(fb * h);
        for (let r = 0; r < n; r++) for (let a = 0; a < fb; a++) for (let j = 0; j < h; j++) g[a * h + j] += x[r * fb + a] * cut[r * h + j];
        await session.client.post('/mail', { to: holderName, tag: `gradm:${session.me}:${tag}` }, [f64Bytes(g)]);
        grad = bytesF64((await session.client.poll('/mailbox', { tag: `gradr:${tag}` }, { ...timeout, what: `the gradient of ${holderName}` })).blobs[0]);
      }
      bottom.apply(grad.map((v) => v / n), lr);
    }
    roundSeconds.push((performance.now() - t0) / 1000);
    for (const [k, c] of chunks(plan.validation, B).entries()) await contribute(`val:${e}:${k}`, c);
  }
  for (const [k, c] of chunks(plan.test, B).entries()) await contribute(`test:${k}`, c);
  const epsilon = dp ? privacySpent(1, sigmaE, align.maxMultiplicity * fed.rounds, dp.delta).epsilon : null;
  await session.client.post('/mail', { to: holderName, tag: `vfl-final:${session.me}`, epsilon }, [f64Bytes(bottom.w), f64Bytes(Float64Array.from(norm.mean)), f64Bytes(Float64Array.from(norm.std))]);
  return {
    party: session.me,
    checkpoint: null,
    partition: 'vertical',
    parties: session.peers.length,
    rounds: fed.rounds,
    val_accuracy: NaN,
    epsilon,
    delta: dp?.delta ?? null,
    sigma: dp ? sigmaE : null,
    bytes_sent: 0,
    bytes_received: 0,
    seconds: 0,
    round_seconds: roundSeconds,
  };
}
