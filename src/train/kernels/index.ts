/**
 * Everything src/train/kernels adds to tfjs, registered by src/train/backend.ts once the
 * backend is up: see the header of each module.
 */
import { registerWasmGradientKernels } from './wasm-grad-kernels.js';
import { registerWasmMatMul } from './wasm-matmul.js';
import { registerFusedKernels } from './fused-kernels.js';
import { cpus } from 'node:os';

export { withWasmThreads, wasmThreadsCount } from './wasm-threads.js';

/**
 * Threads for the wasm backend's XNNPACK pool: HEPOLY_WASM_THREADS (a number, or "cores";
 * default 1 = the single-threaded SIMD build). Opt-in because it did not pay where it was
 * measured (bench/README-speed.md: a 2-core machine shared with other jobs, where the pool's
 * second thread competes for the same cores and XNNPACK's share of a step is ~40%).
 */
export function wasmThreadsWanted(): number {
  const env = process.env.HEPOLY_WASM_THREADS;
  if (env === 'cores') return Math.max(1, cpus().length);
  if (env !== undefined && env !== '') {
    const n = Math.floor(Number(env));
    return Number.isFinite(n) && n >= 1 ? n : 1;
  }
  return 1;
}

/** After tf.setBackend('wasm'). */
export function registerWasmKernels(): void {
  registerWasmGradientKernels();
  registerWasmMatMul();
  registerFusedKernels('wasm');
}

/** Before or after tf.setBackend('cpu'). */
export function registerCpuKernels(): void {
  registerFusedKernels('cpu');
}
