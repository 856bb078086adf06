import { parentPort } from 'node:worker_threads';
import type { CkksBackend } from '../../he/backend.js';
import { CkksContext, loadSeal, type CipherText, type PlainText } from '../../he/seal.js';
import { SealBackend } from '../../he/seal-backend.js';
import { deleteEvaluationKeys, loadEvaluationKeys } from '../../he/keys.js';
import { SampleEvaluator, planSample } from '../../he/packing/sample.js';
import { type PassRunner, packingOf } from '../../he/packing/index.js';
import type { EvalFromWorker, EvalToWorker, EvalWork, TensorCts } from './eval-protocol.js';
import type { HeProgram } from '../../he/program.js';
import { runBatchRange } from '../../he/tiles/batch-pass.js';
import { PortTeam } from '../../he/team.js';

/**
 * One evaluation thread of `hepoly serve`, serving many clients: the program's diagonals are
 * encoded once (they depend on the parameters, not on anyone's keys), and each client's
 * public evaluation keys are loaded into a SealBackend of their own, kept for the next
 * request of that key id (least recently used dropped past `maxKeySets`). The evaluator
 * reaches the request's backend through a forwarding backend, so switching clients costs a
 * pointer, not a re-encoding. It receives bytes only; no secret key exists on this side.
 */

const port = parentPort;
if (!port) throw new Error('deploy/server/eval-worker.ts must run in a worker thread');

interface KeySet {
  backend: SealBackend;
  release: () => void;
}

let ctx: CkksContext | null = null;
/** sample packing (which also runs the segments of a --refresh client export) */
let evaluator: SampleEvaluator<CipherText, PlainText> | null = null;
/** batch, stacked, interleaved: the registry's pass runner */
let runner: PassRunner<CipherText> | null = null;
/** batch packing of a --refresh client export: its segments run here (runBatchRange) */
let batchProgram: HeProgram | null = null;
let current: SealBackend | null = null;
let maxKeySets = 4;
/** --workers-per-sample: the peers this thread evaluates each request with */
let team: PortTeam<CipherText> | null = null;
const keySets = new Map<string, KeySet>();

/** Every call goes to the backend of the request being evaluated. */
const forwarding = new Proxy({} as CkksBackend<CipherText, PlainText>, {
  get(_t, prop) {
    const be = current as unknown as Record<string | symbol, unknown>;
    const v = be[prop];
    return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(be) : v;
  },
});

function send(m: EvalFromWorker): void {
  port!.postMessage(m);
}

function useKeys(keyId: string, keys: Extract<EvalToWorker, { type: 'eval' }>['keys']): void {
  let set = keySets.get(keyId);
  if (!set && keys) {
    const loaded = loadEvaluationKeys(ctx!, keys);
    const backend = new SealBackend(ctx!, loaded);
    set = { backend, release: () => (backend.delete(), deleteEvaluationKeys(loaded)) };
    keySets.set(keyId, set);
    while (keySets.size > maxKeySets) {
      const [oldest, s] = keySets.entries().next().value!;
      keySets.delete(oldest);
      s.release();
    }
  }
  if (!set) throw new Error(`internal: worker has no keys for ${keyId}`);
  keySets.delete(keyId);
  keySets.set(keyId, set); // most recently used last
  current = set.backend;
}

/**
 * A whole pass, or one segment of a program cut for client refreshes (its diagonals are
 * encoded when a segment other than the last one run here comes: SampleEvaluator.runRange).
 */
function evaluate(ev: SampleEvaluator<CipherText, PlainText>, work: EvalWork): TensorCts[] {
  const p = ev.program;
  const whole = work.kind === 'pass';
  const given = whole ? [{ tensor: p.input, cts: work.inputs }] : work.tensors;
  const from = whole ? 0 : work.from;
  const to = whole ? p.steps.length : work.to;
  const keep = whole ? [p.output] : work.keep;
  const inputs = new Map(given.map((t) => [t.tensor, t.cts.map((b) => forwarding.deserialize(b))]));
  const kept = ev.runRange(inputs, from, to, keep);
  const outputs = keep.map((t) => ({ tensor: t, cts: kept.get(t)!.map((c) => toBytes(c)) }));
  for (const cts of [...kept.values(), ...inputs.values()]) for (const c of cts) forwarding.free(c);
  return outputs;
}

/**
 * What a worker answers goes to the client, which only decrypts it (outputs, and the
 * tensors it re-encrypts at a refresh): sent at the last level, whose one prime still holds
 * every value (the q0 check), it is a fraction of the bytes. A ciphertext the packing leaves
 * out (null) travels as an empty part.
 */
const toBytes = (c: CipherText | null): Uint8Array => {
  if (!c) return new Uint8Array(0);
  if (forwarding.levelOf(c) > 0) forwarding.modSwitchInPlace(c, 0);
  return forwarding.serialize(c);
};
const fromBytes = (b: Uint8Array): CipherText | null => (b.length ? forwarding.deserialize(b) : null);

/** One segment of a batch-packed program cut for client refreshes: its kept tensors, element by element. */
function runBatchSegment(p: HeProgram, work: EvalWork): TensorCts[] {
  if (work.kind !== 'segment') throw new Error('internal: a program cut for client refreshes runs segment by segment');
  const given = new Map(work.tensors.map((t) => [t.tensor, t.cts.map(fromBytes)]));
  const kept = runBatchRange(p, forwarding, given, work, { workers: 1, N: ctx!.slots * 2 });
  const outputs = work.keep.map((t) => ({ tensor: t, cts: kept.get(t)!.map(toBytes) }));
  // a kept tensor may be one the segment was given: each ciphertext freed once
  const all = new Set([...kept.values(), ...given.values()].flat());
  for (const c of all) if (c) forwarding.free(c);
  return outputs;
}

/** One pass of a multi-sample packing. */
function runPass(r: PassRunner<CipherText>, work: EvalWork): Uint8Array[] {
  if (work.kind !== 'pass') throw new Error('internal: only sample and batch packing run refresh segments');
  const inputs = work.inputs.map((b) => forwarding.deserialize(b));
  const outs = r.run(inputs);
  const bytes = outs.map(toBytes);
  for (const c of [...outs, ...inputs]) if (c) forwarding.free(c);
  return bytes;
}

port.on('message', (msg: EvalToWorker) => {
  void (async () => {
    const id = msg.type === 'eval' ? msg.id : -1;
    try {
      if (msg.type === 'init') {
        const seal = await loadSeal();
        ctx = CkksContext.create(seal, msg.params);
        maxKeySets = msg.maxKeySets;
        useKeys(msg.keyId, msg.keys);
        const t0 = performance.now();
        // token packing's program arrives folded (server.ts): the batch evaluator runs it as it is
        const kind = msg.packing.kind === 'token' ? 'batch' : msg.packing.kind;
        if (msg.team) team = new PortTeam(msg.team, forwarding);
        if (kind === 'sample') evaluator = new SampleEvaluator(msg.program, planSample(msg.program, ctx.slots), forwarding, { keptDiagonalBytes: msg.keptDiagonalBytes, team: team ?? undefined });
        else if (kind === 'batch' && msg.program.refreshes?.length) batchProgram = msg.program;
        else {
          const packing = packingOf(kind);
          runner = packing.run(packing.plan(msg.program, ctx.slots, msg.packing.samplesPerPass), forwarding);
        }
        send({ type: 'ready', prepareMs: performance.now() - t0, heapBytes: process.memoryUsage().external });
      } else if (msg.type === 'eval') {
        if (!evaluator && !runner && !batchProgram) throw new Error('worker used before init');
        team?.begin(msg.id);
        useKeys(msg.keyId, msg.keys);
        const t0 = performance.now();
        const outputs = evaluator ? evaluate(evaluator, msg.work) : batchProgram ? runBatchSegment(batchProgram, msg.work) : [{ tensor: -1, cts: runPass(runner!, msg.work) }];
        send({ type: 'evalDone', id, outputs, ms: performance.now() - t0, heapBytes: process.memoryUsage().external });
      }
    } catch (e) {
      // peers blocked on this thread's next message would otherwise wait for their timeout
      team?.abort((e as Error)?.message ?? String(e));
      send({ type: 'error', id, message: (e as Error)?.message ?? String(e) });
    }
  })();
});
