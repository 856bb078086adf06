/**
 * Runs the SIMD kernels of simd-kernels.ts on several threads: the calling thread takes the
 * first part of a kernel call, helper worker threads the others, all on the same (shared)
 * wasm memory, and the call returns when every part is done.
 *
 * Why not XNNPACK's own pthreadpool (tfjs-backend-wasm's threaded build, wasm-threads.ts):
 * its threads spin while they wait for work, so on a 2-core machine shared with other jobs
 * the spinning thread takes the core the work needs; there it measured 2x slower than one
 * thread (docs/results.md). The helpers here sleep in Atomics.wait (a futex) between calls
 * and are woken once per kernel call, which costs microseconds against the milliseconds of a
 * convolution.
 *
 * Results are bit-for-bit those of one thread: callers split only over output elements
 * (samples, or output channels), so every output is summed in the same order whatever the
 * number of threads (kernel-parallel.ts).
 *
 * Needs the threaded build's SharedArrayBuffer memory (a plain wasm memory cannot be seen
 * from another thread); the helpers are unref'ed, so an idle pool never keeps a process alive.
 */
import { Worker } from 'node:worker_threads';
import { buildSimdModule, type SimdExports } from './simd-kernels.js';

// one job slot per helper: an Int32Array over a SharedArrayBuffer
const SEQ = 0; // job number written by the caller (-1: stop)
const DONE = 1; // last job number the helper finished
const FN = 2; // index of the kernel in `names`
const FAILED = 3; // 1 when the helper's part threw
const ARGS = 4;
const MAX_ARGS = 28;

// plain CommonJS, evaluated as the helper's whole program: it needs nothing but the module
const HELPER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { module, memory, slot, names } = workerData;
const k = new WebAssembly.Instance(module, { env: { memory } }).exports;
const s = new Int32Array(slot);
let seen = 0;
for (;;) {
  Atomics.wait(s, ${SEQ}, seen);
  const job = Atomics.load(s, ${SEQ});
  if (job === seen) continue;
  seen = job;
  if (job < 0) break;
  try {
    k[names[s[${FN}]]](...s.subarray(${ARGS}, ${ARGS} + ${MAX_ARGS}));
    s[${FAILED}] = 0;
  } catch (e) {
    s[${FAILED}] = 1;
  }
  Atomics.store(s, ${DONE}, job);
  Atomics.notify(s, ${DONE});
}
`;

export type KernelName = keyof SimdExports;

export class KernelPool {
  private readonly slots: Int32Array[] = [];
  private readonly workers: Worker[] = [];
  private readonly names: KernelName[];
  private job = 0;

  /** `helpers` threads besides the caller's, each with its own instance of `module` on `memory`. */
  constructor(
    private readonly local: SimdExports,
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    helpers: number,
  ) {
    this.names = Object.keys(local) as KernelName[];
    for (let i = 0; i < helpers; i++) {
      const slot = new SharedArrayBuffer((ARGS + MAX_ARGS) * 4);
      const worker = new Worker(HELPER_SOURCE, { eval: true, workerData: { module, memory, slot, names: this.names } });
      worker.unref();
      this.workers.push(worker);
      this.slots.push(new Int32Array(slot));
    }
  }

  /** Threads a call can be split over: the caller's and the helpers'. */
  get threads(): number {
    return this.workers.length + 1;
  }

  /**
   * Runs `fn` once per entry of `parts` (its arguments), concurrently: parts[0] on this
   * thread, parts[i] on helper i-1. At most `threads` parts; the parts must write disjoint
   * memory. Returns when all are done; throws when one failed.
   */
  run(fn: KernelName, parts: number[][]): void {
    if (parts.length > this.threads) throw new Error(`kernel-pool: ${parts.length} parts for ${this.threads} threads`);
    const job = ++this.job;
    const index = this.names.indexOf(fn);
    const sent = this.slots.slice(0, parts.length - 1);
    sent.forEach((s, i) => {
      if (parts[i + 1].length > MAX_ARGS) throw new Error(`kernel-pool: ${fn} takes at most ${MAX_ARGS} arguments`);
      s[FN] = index;
      s.fill(0, ARGS);
      s.set(parts[i + 1], ARGS);
      Atomics.store(s, SEQ, job);
      Atomics.notify(s, SEQ);
    });
    let failed = false;
    try {
      (this.local[fn] as (...a: number[]) => void)(...parts[0]);
    } finally {
      // the helpers write into tensors the caller may free next: wait for them even on a throw
      for (const s of sent) {
        for (let done = Atomics.load(s, DONE); done !== job; done = Atomics.load(s, DONE)) Atomics.wait(s, DONE, done);
        failed ||= s[FAILED] === 1;
      }
    }
    if (failed) throw new Error(`kernel-pool: ${fn} failed on a helper thread`);
  }

  /** Stops the helpers (tests; a process-wide pool is simply left to exit with the process). */
  async close(): Promise<void> {
    for (const s of this.slots) {
      Atomics.store(s, SEQ, -1);
      Atomics.notify(s, SEQ);
    }
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}

/** A pool for `memory` (which must be shared) with `threads` threads in all. */
export function createKernelPool(memory: WebAssembly.Memory, module: WebAssembly.Module, threads: number): KernelPool {
  return new KernelPool(buildSimdModule(memory, module), module, memory, Math.max(0, threads - 1));
}

/**
 * [lo, hi) ranges splitting `count` items into at most `parts` nearly equal pieces whose
 * bounds are multiples of `align` (the last ends at `count`); empty pieces are left out.
 */
export function splitRange(count: number, parts: number, align = 1): [number, number][] {
  const units = Math.ceil(count / align);
  const n = Math.max(1, Math.min(parts, units));
  const out: [number, number][] = [];
  for (let i = 0; i < n; i++) {
    const lo = Math.min(count, Math.round((units * i) / n) * align);
    const hi = i === n - 1 ? count : Math.min(count, Math.round((units * (i + 1)) / n) * align);
    if (hi > lo) out.push([lo, hi]);
  }
  return out;
}
