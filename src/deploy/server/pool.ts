import type { Worker } from 'node:worker_threads';
import { spawnModuleWorker } from '../../util/module-worker.js';
import type { HeParams } from '../../he/params.js';
import type { HeProgram } from '../../he/program.js';
import type { EvalFromWorker, EvalWork, EvaluationKeyBytes, TensorCts, WorkerPacking } from './eval-protocol.js';
import { HttpError } from './http-util.js';

/**
 * The server's worker threads (eval-worker.ts: one SEAL instance each, the program's
 * diagonals encoded once), shared by every client. Each worker keeps the evaluation keys of
 * its last `maxKeySets` clients; a request goes preferably to an idle worker that already
 * holds its key id, otherwise to the least recently used idle one, which loads the keys (sent
 * with the request). A worker that dies or runs past the timeout is dropped (its request gets
 * a 5xx) and a fresh one takes its place on the next request.
 */

interface Job {
  keyId: string;
  keys: () => EvaluationKeyBytes;
  work: EvalWork;
  enqueued: number;
  resolve: (r: EvalResult) => void;
  reject: (e: Error) => void;
}

export interface EvalResult {
  outputs: TensorCts[];
  ms: number;
}

interface Slot {
  worker: Worker | null;
  /** key ids the worker holds, least recently used first (the worker evicts the same way) */
  keyIds: string[];
  busy: boolean;
  lastUsed: number;
  heapBytes: number;
  /** the one request in flight on this worker */
  onMessage: ((m: EvalFromWorker) => void) | null;
  onExit: ((code: number) => void) | null;
}

/** a queued request older than this takes the next idle worker even if others match better */
const MAX_AFFINITY_WAIT_MS = 2000;

export class WorkerPool {
  private readonly slots: Slot[];
  private readonly queue: Job[] = [];
  private nextId = 1;
  replaced = 0;
  /** key sets loaded into a worker (a client's first request there, or after an eviction) */
  keyLoads = 0;
  private closed = false;

  constructor(
    size: number,
    private readonly timeoutMs: number,
    private readonly params: HeParams,
    private readonly program: HeProgram,
    private readonly packing: WorkerPacking,
    private readonly maxKeySets: number,
    /** per worker: a cut program's diagonals kept encoded across requests (SampleEvaluator) */
    private readonly keptDiagonalBytes = 0,
  ) {
    this.slots = Array.from({ length: Math.max(1, size) }, () => ({ worker: null, keyIds: [], busy: false, lastUsed: 0, heapBytes: 0, onMessage: null, onExit: null }));
  }

  get size(): number {
    return this.slots.length;
  }

  get queueDepth(): number {
    return this.queue.length;
  }

  get busyWorkers(): number {
    return this.slots.filter((s) => s.busy).length;
  }

  /** SEAL wasm heap of each worker (the isolate's external memory; it only grows) */
  get heapBytes(): number[] {
    return this.slots.map((s) => s.heapBytes);
  }

  /** Test hook: the live worker threads (a test terminates one to check it is replaced). */
  liveWorkers(): Worker[] {
    return this.slots.flatMap((s) => (s.worker ? [s.worker] : []));
  }

  /** One sample's pass, or one segment of it (`--refresh client` exports), on the next fitting idle worker. */
  run(keyId: string, keys: () => EvaluationKeyBytes, work: EvalWork): Promise<EvalResult> {
    if (this.closed) return Promise.reject(new HttpError(503, 'the server is shutting down'));
    return new Promise((resolve, reject) => {
      this.queue.push({ keyId, keys, work, enqueued: Date.now(), resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    for (;;) {
      const idle = this.slots.filter((s) => !s.busy);
      if (!idle.length || !this.queue.length) return;
      const holds = (sl: Slot, j: Job) => !!sl.worker && sl.keyIds.includes(j.keyId);
      let jobIdx = -1;
      let slot: Slot | undefined;
      if (Date.now() - this.queue[0].enqueued < MAX_AFFINITY_WAIT_MS) {
        jobIdx = this.queue.findIndex((j) => idle.some((sl) => holds(sl, j)));
        if (jobIdx >= 0) slot = idle.find((sl) => holds(sl, this.queue[jobIdx]));
      }
      if (!slot) {
        jobIdx = 0;
        slot = idle.find((sl) => holds(sl, this.queue[0])) ?? idle.sort((a, b) => a.lastUsed - b.lastUsed)[0];
      }
      const [job] = this.queue.splice(jobIdx, 1);
      slot.busy = true;
      void this.execute(slot, job).finally(() => {
        slot.busy = false;
        slot.lastUsed = Date.now();
        this.pump();
      });
    }
  }

  private async execute(slot: Slot, job: Job): Promise<void> {
    try {
      let sendKeys = !slot.keyIds.includes(job.keyId);
      if (!slot.worker) {
        const w = spawnEvaluationWorker();
        slot.worker = w;
        slot.keyIds = [job.keyId];
        w.on('exit', (code) => {
          if (slot.worker !== w) return; // dropped on purpose
          slot.worker = null;
          slot.keyIds = [];
          this.replaced++;
          slot.onExit?.(code);
        });
        w.on('error', () => {}); // 'exit' follows and answers the request
        w.on('message', (m: EvalFromWorker) => {
          if ('heapBytes' in m) slot.heapBytes = Math.max(slot.heapBytes, m.heapBytes);
          slot.onMessage?.(m);
        });
        w.postMessage({ type: 'init', params: this.params, program: this.program, packing: this.packing, maxKeySets: this.maxKeySets, keptDiagonalBytes: this.keptDiagonalBytes, keyId: job.keyId, keys: job.keys() });
        this.keyLoads++;
        await this.await(slot, -1, 'ready');
        sendKeys = false;
      }
      const id = this.nextId++;
      slot.worker!.postMessage({ type: 'eval', id, keyId: job.keyId, keys: sendKeys ? job.keys() : null, work: job.work });
      if (sendKeys) this.keyLoads++;
      // mirror the worker's least-recently-used order and eviction
      slot.keyIds = [...slot.keyIds.filter((k) => k !== job.keyId), job.keyId].slice(-this.maxKeySets);
      const done = await this.await(slot, id, 'evalDone');
      if (done.type !== 'evalDone') throw new Error('internal: unexpected worker reply');
      job.resolve({ outputs: done.outputs, ms: done.ms });
    } catch (e) {
      job.reject(e as Error);
    }
  }

  /** The worker's next reply of `type` for request `id`; a death, an error or the timeout reject. */
  private await(slot: Slot, id: number, type: 'ready' | 'evalDone'): Promise<EvalFromWorker> {
    return new Promise((resolve, reject) => {
      const finish = (err: Error | null, m?: EvalFromWorker) => {
        clearTimeout(timer);
        slot.onMessage = null;
        slot.onExit = null;
        if (err) reject(err);
        else resolve(m!);
      };
      const timer = setTimeout(() => {
        finish(new HttpError(504, `the evaluation ran past the server's ${this.timeoutMs / 1000} s timeout; its worker was replaced. Retry, or ask the operator for a longer --timeout`));
        void this.drop(slot);
        this.replaced++;
      }, this.timeoutMs);
      slot.onMessage = (m) => {
        if (m.type === type && (type === 'ready' || ('id' in m && m.id === id))) finish(null, m);
        else if (m.type === 'error' && (m.id === id || m.id === -1)) {
          finish(new HttpError(500, `the evaluation failed in the server's worker: ${m.message}`));
          void this.drop(slot);
        }
      };
      slot.onExit = (code) =>
        finish(new HttpError(500, `the server's evaluation worker died (exit code ${code}, e.g. SEAL's memory ran out); it is replaced for the next request. Retry`));
    });
  }

  private async drop(slot: Slot): Promise<void> {
    const w = slot.worker;
    slot.worker = null;
    slot.keyIds = [];
    slot.onExit = null;
    if (w) await w.terminate();
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const j of this.queue.splice(0)) j.reject(new HttpError(503, 'the server is shutting down'));
    await Promise.all(this.slots.map((s) => this.drop(s)));
  }
}

function spawnEvaluationWorker(): Worker {
  return spawnModuleWorker(import.meta.url, 'eval-worker');
}
