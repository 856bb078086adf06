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
import { alignRows } from './psi.js';
import { BottomModel, clipRows } from './split-model.js';
import { batches, chunks, gather, standardize, X_MAX, type LocalColumns, type Plan } from './common.js';

/** A bank of a vertical run: see vertical/party.ts for the protocol. */

export async function bank(opts: PartyRunOptions, session: Session, local: LocalColumns): Promise<PartyResult> {
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
