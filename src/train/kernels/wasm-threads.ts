/**
 * Starts tfjs-backend-wasm's multi-threaded SIMD build in Node (XNNPACK's convolutions and
 * matrix products then run on a pthreadpool of `threads` threads).
 *
 * tfjs 4.22 disables it in Node (WASM_HAS_MULTITHREAD_SUPPORT is false there, tfjs#3830), and
 * simply enabling it fails: the Emscripten pthread workers are created from blob: URLs, which
 * Node's worker_threads reject, and the pool size is capped at os.cpus().length / 2 (the C++
 * side assumes two hyperthreads per core). The build itself supports Node (its worker script
 * uses worker_threads, fs and require), so this module
 *  - writes the worker script and a loader of the main script to a temporary directory, and
 *    answers the backend's URL.createObjectURL(workerBlob) with that file's path; inside the
 *    worker, URL.createObjectURL(mainScriptBlob) is answered with the loader's path;
 *  - reports 2 * threads CPUs to the module while it initializes, so the pool gets `threads`;
 *  - unrefs the pool's workers afterwards, so an idle pool does not keep the process alive,
 *    and terminates the pre-spawned workers the pool does not use;
 *  - with `threads` = 1 (the build loaded only for its shared memory, kernel-pool.ts) gives
 *    Emscripten stand-in workers: it pre-spawns 8 pthread workers whatever the pool size and
 *    waits until each has loaded the module, which took ~7 s of start-up on 2 loaded cores,
 *    for threads a 1-thread XNNPACK pool never starts.
 * Everything patched is restored as soon as the backend is initialized; the temporary files
 * are removed then (workers read them only while starting).
 */
import * as tf from '@tensorflow/tfjs-core';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { tmpdir } from 'node:os';

const require = createRequire(import.meta.url);

interface EmscriptenWorker {
  unref?(): void;
  terminate?(): void;
}

interface PThreadLike {
  unusedWorkers: EmscriptenWorker[];
  runningWorkers: EmscriptenWorker[];
}

/**
 * Runs `init` (which must call tf.setBackend('wasm')) with the threaded build enabled for
 * `threads` threads. Returns init's result; throws what init throws.
 */
export async function withWasmThreads(threads: number, init: () => Promise<boolean>): Promise<boolean> {
  const wasmPkg = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'));
  const { wasmWorkerContents } = require(join(wasmPkg, 'wasm-out/tfjs-backend-wasm-threaded-simd.worker.js')) as { wasmWorkerContents: string };
  const wasmApi = (await import('@tensorflow/tfjs-backend-wasm')) as unknown as { setThreadsCount(n: number): void };
  const dir = mkdtempSync(join(tmpdir(), 'hepoly-wasm-threads-'));
  const mainPath = join(dir, 'main.cjs');
  const workerPath = join(dir, 'worker.cjs');
  writeFileSync(mainPath, `var WasmBackendModuleThreadedSimd = require(${JSON.stringify(join(wasmPkg, 'wasm-out/tfjs-backend-wasm-threaded-simd.js'))});\n`);
  // tfjs escapes newlines the same way before putting the worker source in a Blob
  writeFileSync(workerPath, `URL.createObjectURL = () => ${JSON.stringify(mainPath)}; URL.revokeObjectURL = () => {};\n${wasmWorkerContents.replace(/\n/g, '\\n')}`);

  const os = require('os') as { cpus: () => unknown[] };
  const cpus = os.cpus;
  const createObjectURL = URL.createObjectURL;
  os.cpus = () => Array.from({ length: 2 * threads }, () => cpus()[0]);
  URL.createObjectURL = ((blob: Blob) => (blob?.type === 'application/javascript' ? workerPath : createObjectURL(blob))) as typeof URL.createObjectURL;
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  wasmApi.setThreadsCount(threads);
  const restoreWorker = threads === 1 ? standInWorkers() : () => {};
  try {
    const ok = await init();
    if (ok) releaseIdleWorkers();
    return ok;
  } finally {
    restoreWorker();
    os.cpus = cpus;
    URL.createObjectURL = createObjectURL;
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * A pthread worker that answers Emscripten's 'load' and refuses to run a thread (none is
 * started by a 1-thread pool). Emscripten assigns global.Worker = worker_threads.Worker on
 * every start, so the stand-in is installed as an accessor that ignores that assignment;
 * the returned function puts the previous global back.
 */
function standInWorkers(): () => void {
  class StandInWorker {
    private onMessage: ((data: unknown) => void) | null = null;
    on(event: string, fn: (data: unknown) => void): void {
      if (event === 'message') this.onMessage = fn;
    }
    postMessage(msg: { cmd?: string }): void {
      if (msg?.cmd !== 'load') throw new Error(`wasm-threads: a 1-thread pool was asked to run a pthread (${msg?.cmd})`);
      setImmediate(() => this.onMessage?.({ cmd: 'loaded' }));
    }
    unref(): void {}
    ref(): void {}
    terminate(): void {}
  }
  const g = globalThis as Record<string, unknown>;
  const previous = Object.getOwnPropertyDescriptor(g, 'Worker');
  Object.defineProperty(g, 'Worker', { configurable: true, get: () => StandInWorker, set: () => {} });
  return () => {
    if (previous) Object.defineProperty(g, 'Worker', previous);
    else delete g.Worker;
  };
}

function releaseIdleWorkers(): void {
  const b = tf.findBackend('wasm') as unknown as { wasm?: { PThread?: PThreadLike } } | null;
  const pt = b?.wasm?.PThread;
  if (!pt) return;
  for (const w of pt.runningWorkers) w.unref?.();
  for (const w of pt.unusedWorkers.splice(0)) w.terminate?.();
}

/** Threads of the active wasm backend's XNNPACK pool (1 for the single-threaded builds). */
export function wasmThreadsCount(): number {
  try {
    const b = tf.findBackend('wasm') as unknown as { wasm?: { tfjs?: { getThreadsCount(): number } } } | null;
    return b?.wasm?.tfjs?.getThreadsCount() ?? 1;
  } catch {
    return 1;
  }
}
