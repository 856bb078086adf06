import type { Recipe } from '../../recipe/schema.js';
import { buildGraph } from '../../models/build.js';
import { initWeights } from '../../models/tf-interpreter.js';
import { learningRate } from '../../train/schedule.js';
import { calibrateSigma, privacySpent } from '../accountant.js';
import { sumContext, type Session } from '../session.js';
import { secureSum, type SecureSumContext } from '../secure-sum.js';
import { SecureRandom } from '../secure-random.js';
import { bytesF64, f64Bytes } from '../wire.js';
import type { PartyResult, PartyRunOptions } from '../horizontal/party.js';
import { GradientEvaluator } from './he-gradient.js';
import { alignment, psiAnswer, PsiKey, psiRows, type Alignment } from './psi.js';
import { BottomModel, clipRows } from './split-model.js';
import { batches, chunks, gather, standardize, X_MAX, type LocalColumns, type Plan } from './common.js';

/** A bank of a vertical run: see vertical/party.ts for the protocol. */

/** What one bank's steps share. */
interface BankRun {
  session: Session;
  holder: string;
  banks: string[];
  ctx: SecureSumContext;
  timeout: { seconds: number };
  plan: Plan;
  /** per label-holder row, this bank's (standardized; under DP clipped and noised) columns */
  x: Float64Array;
  bottom: BottomModel;
  evaluator: GradientEvaluator | null;
}

export async function bank(opts: PartyRunOptions, session: Session, local: LocalColumns): Promise<PartyResult> {
  const fed = opts.recipe.federated!;
  const log = opts.log ?? (() => undefined);
  const holder = fed.parties.find((p) => p.label)!.name;
  const timeout = { seconds: fed.round_timeout };
  const setup = await session.client.poll('/mailbox', { tag: 'vfl-setup' }, { ...timeout, what: `the setup message of ${holder}` });
  const raw = setup.header.plan as Plan & { train: number[]; validation: number[]; test: number[] };
  const plan: Plan = { ...raw, train: Int32Array.from(raw.train), validation: Int32Array.from(raw.validation), test: Int32Array.from(raw.test) };
  const align = await alignIds(session, holder, local, setup.blobs, opts.recipeFile, timeout);
  log(`party ${session.me}: ${align.matched} of the label holder's ${align.rowOf.length} rows have an account here (at most ${align.maxMultiplicity} rows per account)`);
  const columns = releaseColumns(local, align, fed.dp, log);
  const run: BankRun = {
    session,
    holder,
    banks: session.peers.filter((p) => p.name !== holder).map((p) => p.name),
    ctx: sumContext(session, null, fed.secure_aggregation),
    timeout,
    plan,
    x: columns.x,
    bottom: initialBottom(opts, session, holder, local.features.length, plan),
    evaluator: fed.aggregation === 'he' ? await GradientEvaluator.create(setup.blobs[2], setup.blobs[3]) : null,
  };
  const roundSeconds: number[] = [];
  for (let e = 1; e <= fed.rounds; e++) {
    const t0 = performance.now();
    const lr = learningRate({ ...opts.recipe.train, epochs: fed.rounds }, e - 1);
    for (const [s, rows] of batches(plan, e, opts.recipe.train.batch).entries()) await trainStep(run, `${e}:${s}`, rows, lr);
    roundSeconds.push((performance.now() - t0) / 1000);
    await contributeRows(run, `val:${e}`, plan.validation, opts.recipe.train.batch);
  }
  await contributeRows(run, 'test', plan.test, opts.recipe.train.batch);
  await session.client.post('/mail', { to: holder, tag: `vfl-final:${session.me}`, epsilon: columns.epsilon }, [f64Bytes(run.bottom.w), f64Bytes(Float64Array.from(columns.mean)), f64Bytes(Float64Array.from(columns.std))]);
  return {
    party: session.me,
    checkpoint: null,
    partition: 'vertical',
    parties: session.peers.length,
    rounds: fed.rounds,
    val_accuracy: NaN,
    epsilon: columns.epsilon,
    delta: fed.dp?.delta ?? null,
    sigma: columns.sigma,
    bytes_sent: 0,
    bytes_received: 0,
    seconds: 0,
    round_seconds: roundSeconds,
  };
}

/** The bank's side of the PSI (psi.ts): its blinded IDs out, the row map worked out from what comes back. */
async function alignIds(session: Session, holder: string, local: LocalColumns, setup: Uint8Array[], recipeFile: string, timeout: { seconds: number }): Promise<Alignment> {
  const holderKey = session.peers.find((p) => p.name === holder)!.publicKey;
  const ids = local.table.rows.map((r) => r[local.keyCol]);
  const where = { file: local.table.file, field: `federated.parties[${local.index}].key`, recipeFile };
  const key = new PsiKey();
  await session.client.post('/mail', { to: holder, tag: `psi:${session.me}` }, [psiAnswer(key, ids, where)]);
  // while the label holder answers
  const doubled = key.reblind(setup[0], "the label holder's PSI message");
  const third = await session.client.poll('/mailbox', { tag: 'psi-3' }, { ...timeout, what: `the PSI reply of ${holder}` });
  const idIndex = Uint8Array.from(session.identity.open(holderKey, 'vfl-psi-rows', setup[1]));
  const rows = psiRows(doubled, session.identity.open(holderKey, 'vfl-psi-3', third.blobs[0]), new Int32Array(idIndex.buffer));
  return alignment(rows, ids.length, where);
}

/**
 * This bank's columns per label-holder row, zeros where it lacks the ID. Under DP, what the
 * label holder ever sees of them is a function of one Gaussian release per distinct ID
 * (x clipped to norm X_MAX, plus N(0, (sigma X_MAX)^2) per column; an ID it lacks gets the
 * noise alone, so its absence is covered too): the whole run is post-processing of that
 * release, one Gaussian mechanism at q = 1, however many rows name an account and however
 * many epochs run. Rows are clipped to X_MAX again afterwards, for the label side's bound.
 */
export function releaseColumns(local: LocalColumns, align: Alignment, dp: NonNullable<Recipe['federated']>['dp'], log: (m: string) => void): { x: Float64Array; mean: number[]; std: number[]; epsilon: number | null; sigma: number | null } {
  const fb = local.features.length;
  const norm = standardize(local.x, null, fb);
  const out = new Float64Array(align.rowOf.length * fb);
  if (!dp) {
    align.rowOf.forEach((r, i) => r >= 0 && out.set(norm.out.subarray(r * fb, (r + 1) * fb), i * fb));
    return { x: out, mean: norm.mean, std: norm.std, epsilon: null, sigma: null };
  }
  clipRows(norm.out, local.table.rows.length, fb, X_MAX);
  const sigma = calibrateSigma(dp, 1, 1);
  log(`dp (features, towards the label holder): one release per ID, noise multiplier ${sigma.toFixed(3)} on rows clipped to ${X_MAX}`);
  const random = new SecureRandom();
  const ids = Math.max(...align.idIndex) + 1;
  const released = Float64Array.from({ length: ids * fb }, () => sigma * X_MAX * random.normal());
  const done = new Uint8Array(ids);
  align.rowOf.forEach((r, i) => {
    const k = align.idIndex[i];
    if (r < 0 || done[k]) return;
    done[k] = 1;
    for (let f = 0; f < fb; f++) released[k * fb + f] += norm.out[r * fb + f];
  });
  clipRows(released, ids, fb, X_MAX);
  align.idIndex.forEach((k, i) => out.set(released.subarray(k * fb, (k + 1) * fb), i * fb));
  return { x: out, mean: norm.mean, std: norm.std, epsilon: privacySpent(1, sigma, 1, dp.delta).epsilon, sigma };
}

/** This bank's slice of the assembled model's initial first kernel. */
function initialBottom(opts: PartyRunOptions, session: Session, holder: string, fb: number, plan: Plan): BottomModel {
  const holderFeatures = (session.peers.find((p) => p.name === holder)!.meta.features as string[]).length;
  const mine = session.peers.findIndex((q) => q.name === session.me);
  const before = session.peers.filter((p, i) => i < mine && p.name !== holder).reduce((a, p) => a + (p.meta.features as string[]).length, 0);
  const offset = holderFeatures + before;
  const graph = buildGraph(opts.recipe.model, [plan.totalFeatures], plan.classes, opts.recipeFile);
  const kernel = initWeights(graph, opts.recipe.seed).get('dense1/kernel')!.data;
  return new BottomModel(fb, plan.hidden, Float64Array.from(kernel.subarray(offset * plan.hidden, (offset + fb) * plan.hidden)));
}

/** This bank's bottom outputs for some label-holder rows, as a secure sum only the label holder reads. */
function contribute(run: BankRun, id: string, rows: Int32Array): Promise<unknown> {
  const e = run.bottom.embed(gather(run.x, run.bottom.features, rows), rows.length);
  return secureSum(run.ctx, id, e, { members: run.banks, audience: [run.holder] });
}

async function contributeRows(run: BankRun, tag: string, rows: Int32Array, batch: number): Promise<void> {
  for (const [k, c] of chunks(rows, batch).entries()) await contribute(run, `${tag}:${k}`, c);
}

/** One batch: the forward contribution, then the weight gradient back through the label holder (encrypted, masked). */
async function trainStep(run: BankRun, tag: string, rows: Int32Array, lr: number): Promise<void> {
  const { session, holder, timeout } = run;
  const fb = run.bottom.features;
  const h = run.bottom.hidden;
  const n = rows.length;
  await contribute(run, `emb:${tag}`, rows);
  const m = await session.client.poll('/mailbox', { tag: `grad:${tag}` }, { ...timeout, what: `the encrypted gradient of ${holder}` });
  const x = gather(run.x, fb, rows);
  let sent: Uint8Array;
  let mask: Float64Array | null = null;
  if (run.evaluator) {
    const product = run.evaluator.maskedProduct(m.blobs, x, n, fb, h);
    sent = product.ciphertext;
    mask = product.mask;
  } else {
    sent = f64Bytes(plainProduct(x, bytesF64(m.blobs[0]), n, fb, h));
  }
  await session.client.post('/mail', { to: holder, tag: `gradm:${session.me}:${tag}` }, [sent]);
  const r = await session.client.poll('/mailbox', { tag: `gradr:${tag}` }, { ...timeout, what: `the gradient of ${holder}` });
  const grad = bytesF64(r.blobs[0]);
  run.bottom.apply(grad.map((v, i) => (v - (mask ? mask[i] : 0)) / n), lr);
}

/** X^T dZ in the clear (aggregation: plain). */
function plainProduct(x: Float64Array, cut: Float64Array, n: number, fb: number, h: number): Float64Array {
  const g = new Float64Array(fb * h);
  for (let r = 0; r < n; r++) for (let a = 0; a < fb; a++) for (let j = 0; j < h; j++) g[a * h + j] += x[r * fb + a] * cut[r * h + j];
  return g;
}
