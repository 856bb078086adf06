import { Worker } from 'node:worker_threads';
import { type OpCounts, counting, zeroCounts } from '../backend.js';
import { HEClient } from '../client.js';
import { deleteEvaluationKeys, loadEvaluationKeys } from '../keys.js';
import { SealBackend } from '../seal-backend.js';
import type { CipherText } from '../seal.js';
import type { HeParams } from '../params.js';
import type { HeProgram } from '../program.js';
import { packBatch, unpackBatch } from '../packing/batch.js';
import { runBatchGrouped } from './batch-pass.js';
import { SampleEvaluator, packSample, planSample, unpackTensor } from '../packing/sample.js';
import { size } from '../tensor-ops.js';
import type { PackingKind } from './cost.js';

/**
 * One real pass of a candidate on one thread: the client encrypts, the evaluator (the very
 * code the server's workers run) evaluates, the client decrypts; timed, counted, and with the
 * SEAL heap it needed. In its own worker thread (`measureInWorker`) the heap is a fresh
 * wasm instance, so its growth is this candidate's memory and nothing else's.
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
}

export interface PassMeasurement {
  encryptMs: number;
  evaluateMs: number;
  decryptMs: number;
  latencyMs: number;
  counts: OpCounts;
  /** wasm heap growth from before key generation to the end of the pass */
  heapBytes: number;
  /** decrypted outputs: batch, count x classes; else the output tensor */
  outputs: Float64Array;
}

export async function measurePass(r: PassRequest): Promise<PassMeasurement> {
  const heap0 = process.memoryUsage().external;
  const client = await HEClient.create(r.params);
  const slots = client.slots;
  const plan = r.kind === 'batch' ? null : planSample(r.program, slots);
  const bundle = client.publicBundle(plan ? plan.rotationSteps : []);
  const keys = loadEvaluationKeys(client.ctx, bundle);
  const counts = zeroCounts();
  const be = counting(new SealBackend(client.ctx, keys), counts);
  const sample = plan ? new SampleEvaluator(r.program, plan, be) : null;
  let t = performance.now();
  const per = size(r.program.inputShape);
  const uploads = plan ? client.encrypt(packSample(plan, r.program, r.x)) : client.encrypt(packBatch(r.x, per, 0, r.count, slots));
  const encryptMs = performance.now() - t;
  t = performance.now();
  const inputs = uploads.map((b) => be.deserialize(b));
  let outs: (CipherText | null)[];
  if (sample) {
    outs = sample.run(inputs);
    for (const c of inputs) be.free(c);
  } else {
    outs = runBatchGrouped(r.program, be, inputs, { workers: r.workers ?? 1, N: r.params.polyModulusDegree });
  }
  const downloads = outs.map((c) => (c ? be.serialize(c) : null));
  const evaluateMs = performance.now() - t;
  t = performance.now();
  const plainOuts = downloads.map((b) => (b ? client.decrypt(b) : null));
  const decryptMs = performance.now() - t;
  const heapBytes = process.memoryUsage().external - heap0;
  for (const c of outs) if (c) be.free(c);
  const outputs = plan ? unpackTensor(plan, r.program.output, plainOuts as Float64Array[]) : unpackBatch(plainOuts, r.program.classes, r.count);
  deleteEvaluationKeys(keys);
  client.delete();
  return { encryptMs, evaluateMs, decryptMs, latencyMs: encryptMs + evaluateMs + decryptMs, counts: { ...counts }, heapBytes, outputs };
}

/** Compiled: measure-worker.js next to this file; under tsx, a bootstrap registers tsx first (as the server does). */
function spawn(): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./measure-worker.js', import.meta.url));
  const url = new URL('./measure-worker.ts', import.meta.url).href;
  return new Worker(`import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(url)}); });`, { eval: true });
}

export function measureInWorker(r: PassRequest): Promise<PassMeasurement> {
  const w = spawn();
  return new Promise<PassMeasurement>((resolve, reject) => {
    w.once('message', (m: { ok: true; result: PassMeasurement } | { ok: false; message: string }) => {
      if (m.ok) resolve(m.result);
      else reject(new Error(m.message));
    });
    w.once('error', reject);
    w.postMessage(r);
  }).finally(() => void w.terminate());
}
