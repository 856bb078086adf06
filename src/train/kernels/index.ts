/**
 * Everything src/train/kernels adds to tfjs, registered by src/train/backend.ts once the
 * backend is up: see the header of each module.
 */
import { registerWasmGradientKernels } from './wasm-grad-kernels.js';
import { registerWasmMatMul } from './wasm-matmul.js';
import { registerWasmConvForward } from './wasm-conv-forward.js';
import { registerFusedKernels, setKernelThreads } from './fused-kernels.js';
import { cpus } from 'node:os';

export { withWasmThreads, wasmThreadsCount } from './wasm-threads.js';
export { kernelThreads } from './fused-kernels.js';

/**
 * Threads for training on the wasm backend: HEPOLY_WASM_THREADS (a number, or "cores";
 * default 1 = the single-threaded SIMD build). With more than one, tfjs-backend-wasm's
 * threaded build is loaded (for its shared memory) with XNNPACK's pool kept at one thread,
 * and the convolution gradients of simd-kernels.ts are split across that many threads
 * (kernel-pool.ts says why not XNNPACK's spinning pool).
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

/** After tf.setBackend('wasm'); `threads` as wasmThreadsWanted. */
export function registerWasmKernels(threads = 1): void {
  setKernelThreads(threads);
  registerWasmGradientKernels();
  registerWasmConvForward();
  registerWasmMatMul();
  registerFusedKernels('wasm');
}

/** Before or after tf.setBackend('cpu'). */
export function registerCpuKernels(): void {
  registerFusedKernels('cpu');
}
