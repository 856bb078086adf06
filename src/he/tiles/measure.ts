import type { Worker } from 'node:worker_threads';
import { spawnModuleWorker } from '../../util/module-worker.js';
import { type OpCounts, counting, zeroCounts } from '../backend.js';
import { HEClient, type PublicBundle } from '../client.js';
import { deleteEvaluationKeys, loadEvaluationKeys } from '../keys.js';
import { CkksContext, loadSeal } from '../seal.js';
import { SealBackend } from '../seal-backend.js';
import type { CipherText } from '../seal.js';
import type { HeParams } from '../params.js';
import type { HeProgram } from '../program.js';
import { packBatch, unpackBatch } from '../packing/batch.js';
import { SampleEvaluator, packSample, planSample, unpackTensor } from '../packing/sample.js';
import { size } from '../tensor-ops.js';
import { runBatchGrouped } from './batch-pass.js';
import type { PackingKind } from './cost.js';
import { speedProbe } from './calibrate.js';

/**
 * One real pass of a candidate: the client encrypts, the evaluator (the very code the
 * server's workers run) evaluates on one thread, the client decrypts; timed and counted. The
 * evaluating side can run in its own worker thread (`inWorker`), whose SEAL heap is a fresh
 * wasm instance: its growth is then the server's memory for this candidate and nothing else's.
 */

export interface PassRequest {
  kind: PackingKind;
  params: HeParams;
  program: HeProgram;
  /** inputs as the evaluated program takes them: batch, `count` samples row-major; else one (stacked) input */
  x: Float64Array;
  count: number;
  /** batch: split channel groups as a server with this many threads would (default 1) */
  workers?: number;
  /**
   * Evaluate this many passes and report the fastest after the first: the first pass of a
   * fresh SEAL heap also pays for growing its memory pools (page faults), which a serving
   * server pays once, and on a shared host the same pass runs up to ~1.6x slower while a
   * neighbour is busy, so the fastest warm pass is the least disturbed one, the figure the
   * calibration's (median) operation times describe (default 1).
   */
  passes?: number;
}

export interface PassMeasurement {
  encryptMs: number;
  /** the fastest pass after the first (the only one when one pass was run) */
  evaluateMs: number;
  /** the first pass's evaluation time (equal to evaluateMs when one pass was run) */
  firstEvaluateMs: number;
  decryptMs: number;
  latencyMs: number;
  counts: OpCounts;
  /** wasm heap growth of the evaluating side: keys loaded, pass evaluated */
  heapBytes: number;
  /** speedProbe() in the evaluating thread, the mean of the probes just before and just after the reported pass (see calibrate.ts) */
  probeMs: number;
  /** decrypted outputs: batch, count x classes; else the output tensor */
  outputs: Float64Array;
}

interface EvalRequest {
  kind: PackingKind;
  program: HeProgram;
  bundle: PublicBundle;
  uploads: Uint8Array[];
  workers: number;
  passes: number;
}

interface EvalResult {
  downloads: (Uint8Array | null)[];
  evaluateMs: number;
  firstEvaluateMs: number;
  counts: OpCounts;
  heapBytes: number;
  probeMs: number;
}

/** The server's side of a pass, from bytes to bytes. */
export async function evaluatePass(r: EvalRequest): Promise<EvalResult> {
  const seal = await loadSeal();
  await speedProbe(); // its kit (a small context and key) is made before the heap is measured
  const heap0 = process.memoryUsage().external;
  const ctx = CkksContext.create(seal, r.bundle.params);
  const keys = loadEvaluationKeys(ctx, r.bundle);
  const counts = zeroCounts();
  const be = counting(new SealBackend(ctx, keys), counts);
  const sample = r.kind === 'batch' ? null : new SampleEvaluator(r.program, planSample(r.program, be.slots), be);
  const times: number[] = [];
  const probes: number[] = [];
  let downloads: (Uint8Array | null)[] = [];
  let heapBytes = 0;
  for (let pass = 0; pass < Math.max(1, r.passes); pass++) {
    // each pass counts its own operations (the evaluator holds the counting backend it was made with)
    if (pass > 0) for (const k of Object.keys(counts) as (keyof OpCounts)[]) counts[k] = 0;
    // the thread's SEAL speed now: on a shared host it drops up to ~1.6x for a while
    probes.push(pass > 0 || r.passes <= 1 ? await speedProbe() : 0);
    const t = performance.now();
    const inputs = r.uploads.map((b) => be.deserialize(b));
    let outs: (CipherText | null)[];
    if (sample) {
      outs = sample.run(inputs);
      for (const c of inputs) be.free(c);
    } else outs = runBatchGrouped(r.program, be, inputs, { workers: r.workers, N: r.bundle.params.polyModulusDegree });
    downloads = outs.map((c) => (c ? be.serialize(c) : null));
    times.push(performance.now() - t);
    heapBytes = Math.max(heapBytes, process.memoryUsage().external - heap0);
    for (const c of outs) if (c) be.free(c);
  }
  probes.push(await speedProbe());
  deleteEvaluationKeys(keys);
  ctx.delete();
  const reported = times.length > 1 ? 1 + times.slice(1).indexOf(Math.min(...times.slice(1))) : 0;
  // the speed on both sides of the pass: one probe alone missed a change during a 4 s pass
  const probeMs = (probes[reported] + probes[reported + 1]) / 2;
  return { downloads, evaluateMs: times[reported], firstEvaluateMs: times[0], counts: { ...counts }, heapBytes, probeMs };
}

export async function measurePass(r: PassRequest, opts: { inWorker?: boolean } = {}): Promise<PassMeasurement> {
  const client = await HEClient.create(r.params);
  try {
    const slots = client.slots;
    const plan = r.kind === 'batch' ? null : planSample(r.program, slots);
    const bundle = client.publicBundle(plan ? plan.rotationSteps : []);
    let t = performance.now();
    const per = size(r.program.inputShape);
    const uploads = plan ? client.encrypt(packSample(plan, r.program, r.x)) : client.encrypt(packBatch(r.x, per, 0, r.count, slots));
    const encryptMs = performance.now() - t;
    const req: EvalRequest = { kind: r.kind, program: r.program, bundle, uploads, workers: r.workers ?? 1, passes: r.passes ?? 1 };
    const ev = opts.inWorker ? await inWorker(req) : await evaluatePass(req);
    t = performance.now();
    const plainOuts = ev.downloads.map((b) => (b ? client.decrypt(b) : null));
    const decryptMs = performance.now() - t;
    const outputs = plan ? unpackTensor(plan, r.program.output, plainOuts as Float64Array[]) : unpackBatch(plainOuts, r.program.classes, r.count);
    return { encryptMs, evaluateMs: ev.evaluateMs, firstEvaluateMs: ev.firstEvaluateMs, decryptMs, latencyMs: encryptMs + ev.evaluateMs + decryptMs, counts: ev.counts, heapBytes: ev.heapBytes, probeMs: ev.probeMs, outputs };
  } finally {
    client.delete();
  }
}

function spawn(): Worker {
  return spawnModuleWorker(import.meta.url, 'measure-worker');
}

function inWorker(r: EvalRequest): Promise<EvalResult> {
  const w = spawn();
  return new Promise<EvalResult>((resolve, reject) => {
    w.once('message', (m: { ok: true; result: EvalResult } | { ok: false; message: string }) => {
      if (m.ok) resolve(m.result);
      else reject(new Error(m.message));
    });
    w.once('error', reject);
    w.postMessage(r);
  }).finally(() => void w.terminate());
}
