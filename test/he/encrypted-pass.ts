import type { CkksBackend } from '../../src/he/backend.js';
import { HEClient, type PublicBundle } from '../../src/he/client.js';
import { deleteEvaluationKeys, loadEvaluationKeys } from '../../src/he/keys.js';
import type { HeParams } from '../../src/he/params.js';
import type { HeProgram } from '../../src/he/program.js';
import { CkksContext, type Seal, newSeal } from '../../src/he/seal.js';
import { SealBackend } from '../../src/he/seal-backend.js';
import { SimBackend } from '../../src/he/sim-backend.js';
import { type ClientLike, SimClient } from '../../src/he/sim-client.js';
import { packBatch, unpackBatch } from '../../src/he/packing/batch.js';
import { SampleEvaluator, packSample, planSample, unpackTensor } from '../../src/he/packing/sample.js';
import { runBatchGrouped } from '../../src/he/tiles/batch-pass.js';
import { type StackedProgram, stackForSlots, stackInputs, unstackOutputs } from '../../src/he/tiles/stacked.js';

/**
 * One encrypted pass of a compiled program in any packing, on SEAL or on the simulator: the
 * client packs and encrypts, the evaluating side rebuilds its backend from the public bundle
 * alone (no secret key) and evaluates bytes to bytes, the client decrypts and unpacks. The
 * evaluators are the ones the server's workers run; only the thread hop is left out, so a
 * table of tiny programs stays fast.
 */

export type PackingName = 'batch' | 'sample' | `stacked:${number}` | `interleaved:${number}`;
export type Engine = 'seal' | 'sim';

/** Logits of `count` samples (count x classes), as the client decrypts them. */
export async function encryptedPass(p: HeProgram, packing: PackingName, x: Float32Array, count: number, params: HeParams, engine: Engine): Promise<Float64Array> {
  const client: ClientLike = engine === 'seal' ? await sealClient(params) : new SimClient(params);
  const slots = client.slots;
  const per = p.inputShape.reduce((a, b) => a * b, 1);
  if (packing === 'batch') {
    const server = await EvaluatingSide.open(bundleOf(client, []), p, engine, false);
    const outs = server.evaluate(client.encrypt(packBatch(x, per, 0, count, slots)));
    server.close();
    return unpackBatch(outs.map((b) => (b ? client.decrypt(b) : null)), p.classes, count);
  }
  const [kind, mArg] = packing.split(':');
  const stacked: StackedProgram | null = kind === 'sample' ? null : stackForSlots(p, Number(mArg), slots, kind === 'interleaved' ? 'interleave' : 'block');
  const program = stacked ? stacked.program : p;
  const plan = planSample(program, slots);
  const server = await EvaluatingSide.open(bundleOf(client, plan.rotationSteps), program, engine, true);
  const logits = new Float64Array(count * p.classes);
  try {
    // sample packing: one pass per sample; stacked and interleaved: all samples in one pass
    const passes = stacked ? [{ at: 0, n: count }] : Array.from({ length: count }, (_, s) => ({ at: s, n: 1 }));
    for (const { at, n } of passes) {
      const xs = x.subarray(at * per, (at + n) * per);
      const outs = server.evaluate(client.encrypt(packSample(plan, program, stacked ? stackInputs(stacked, xs, per, n) : xs)));
      const y = unpackTensor(plan, program.output, outs.map((b) => client.decrypt(b!)));
      logits.set(stacked ? unstackOutputs(stacked, y, n) : y.subarray(0, p.classes), at * p.classes);
    }
  } finally {
    server.close();
  }
  return logits;
}

/**
 * The tables run hundreds of passes over many parameter sets, and SEAL's memory pools keep
 * the peak of every ciphertext size: on the thread's shared instance that grew a mocha
 * worker's heap by 3.2 GiB, and the next SEAL test file in the same worker ran out of its
 * 4 GiB. So the passes get a SEAL instance of their own, dropped whole (heap included) by
 * `releaseSharedSeal`.
 */
let ownSeal: Promise<Seal> | undefined;
const passSeal = () => (ownSeal ??= newSeal());

/**
 * Making a SEAL context costs about a second at N=8192, and Galois keys half a second to make
 * and load, so the table's rows share one client (keys included) and one server-side context
 * per parameter set, and one public bundle and its loaded keys per set of rotation steps.
 */
const clients = new Map<string, HEClient>();
const serverContexts = new Map<string, CkksContext>();
// weak: the simulator makes a client per pass, and those bundles go with their client
let bundles = new WeakMap<ClientLike, Map<string, PublicBundle>>();
const serverKeys = new Map<PublicBundle, ReturnType<typeof loadEvaluationKeys>>();

function bundleOf(client: ClientLike, steps: number[]): PublicBundle {
  let mine = bundles.get(client);
  if (!mine) bundles.set(client, (mine = new Map()));
  const key = [...steps].sort((a, b) => a - b).join(',');
  let b = mine.get(key);
  if (!b) mine.set(key, (b = client.publicBundle(steps)));
  return b;
}

async function sealClient(params: HeParams): Promise<HEClient> {
  const key = JSON.stringify(params);
  let c = clients.get(key);
  if (!c) clients.set(key, (c = await HEClient.create(params, await passSeal())));
  return c;
}

async function serverContext(params: HeParams): Promise<CkksContext> {
  const key = JSON.stringify(params);
  let c = serverContexts.get(key);
  if (!c) serverContexts.set(key, (c = CkksContext.create(await passSeal(), params)));
  return c;
}

/** Frees the shared clients and contexts, and drops their SEAL instance (call in `after`). */
export function releaseSharedSeal(): void {
  for (const k of serverKeys.values()) deleteEvaluationKeys(k);
  serverKeys.clear();
  bundles = new WeakMap();
  for (const c of clients.values()) c.delete();
  for (const c of serverContexts.values()) c.delete();
  clients.clear();
  serverContexts.clear();
  ownSeal = undefined;
}

/**
 * The server's side: it is built from the public bundle alone (public, relinearization and
 * Galois keys) and turns ciphertext bytes into ciphertext bytes.
 */
class EvaluatingSide {
  private constructor(
    private readonly p: HeProgram,
    private readonly be: CkksBackend<unknown, unknown>,
    private readonly sample: SampleEvaluator<unknown, unknown> | null,
  ) {}

  static async open(bundle: PublicBundle, p: HeProgram, engine: Engine, samplePacked: boolean): Promise<EvaluatingSide> {
    let be: CkksBackend<unknown, unknown>;
    if (engine === 'sim') be = new SimBackend(bundle.params, { noise: true, seed: 5 }) as CkksBackend<unknown, unknown>;
    else {
      const ctx = await serverContext(bundle.params);
      let keys = serverKeys.get(bundle);
      if (!keys) serverKeys.set(bundle, (keys = loadEvaluationKeys(ctx, bundle)));
      be = new SealBackend(ctx, keys) as CkksBackend<unknown, unknown>;
    }
    // the server plans the layouts itself, from the program (the client's plan has the same)
    const sample = samplePacked ? new SampleEvaluator(p, planSample(p, be.slots), be) : null;
    return new EvaluatingSide(p, be, sample);
  }

  evaluate(uploads: Uint8Array[]): (Uint8Array | null)[] {
    const { be } = this;
    const inputs = uploads.map((b) => be.deserialize(b));
    let outs: (unknown | null)[];
    if (this.sample) {
      outs = this.sample.run(inputs);
      // sample packing's evaluator leaves its inputs to the caller; batch packing frees them after their last use
      for (const c of inputs) be.free(c);
    } else outs = runBatchGrouped(this.p, be, inputs, { workers: 2, N: be.slots * 2 });
    const bytes = outs.map((c) => (c ? be.serialize(c) : null));
    for (const c of outs) if (c) be.free(c);
    return bytes;
  }

  close(): void {
    this.sample?.delete();
  }
}
