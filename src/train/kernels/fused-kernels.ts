/**
 * tfjs kernels backed by the SIMD module of simd-kernels.ts (wasm backend), with plain-JS
 * twins on the cpu backend so the same graph runs everywhere:
 *
 *   HepolyPolynomial      {x, coeffs} -> y = sum_k coeffs[k] x^k (Horner)
 *   HepolyPolynomialGrad  {dy, x, coeffs} -> [dx = dy p'(x), dcoeffs[k] = sum(dy x^k)]
 *   HepolyBatchNorm(+Grad) training-mode batch normalization (wasm only; see batchNormTrainFused)
 *
 * (src/layers/polynomial.ts uses them, with a registered gradient, whenever the active backend
 * has them; elsewhere, e.g. tfjs-node, it keeps the op-by-op formula), and fast paths added
 * to three wasm kernels, falling back to the original kernel for every other case:
 *
 *   Sum, Mean     float32 reductions over a contiguous run of axes that excludes the last one
 *                 (bias gradients, batchnorm statistics, global average pooling):
 *                 tfjs-backend-wasm transposes such tensors before reducing;
 *   AvgPoolGrad   non-overlapping windows (stride = size, valid padding), NHWC, C % 4 == 0;
 *   Identity, Cast (to the same dtype): share the buffer instead of copying it.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { buildSimdModule, compileSimdModule, isSharedMemory, type SimdExports } from './simd-kernels.js';
import { createKernelPool, type KernelPool } from './kernel-pool.js';
import { bnApply, bnGradDx, columnReduce, polyForward, REDUCE_CHUNKS } from './kernel-parallel.js';

export const POLYNOMIAL = 'HepolyPolynomial';
export const POLYNOMIAL_GRAD = 'HepolyPolynomialGrad';

// ------------------------------------------------------------------------------------------
// wasm backend access
// ------------------------------------------------------------------------------------------

/** The parts of tfjs-backend-wasm's BackendWasm used here. */
export interface WasmBackendInternals {
  wasm: { asm?: Record<string, unknown>; wasmMemory?: WebAssembly.Memory };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}

export interface Simd {
  k: SimdExports;
  memory: WebAssembly.Memory;
  /** helper threads for the convolution kernels (kernel-parallel.ts); null: this thread only */
  pool: KernelPool | null;
}

const modules = new WeakMap<object, Simd | null>();
let poolThreads = 1;

/**
 * Threads for the SIMD module's convolution kernels, counted with the caller's; takes effect
 * where the wasm memory is shared (tfjs-backend-wasm's threaded build) and before the first
 * simdFor of a backend.
 */
export function setKernelThreads(threads: number): void {
  poolThreads = Math.max(1, Math.floor(threads));
}

function memoryOf(b: WasmBackendInternals): WebAssembly.Memory | null {
  const w = b.wasm;
  if (w.wasmMemory instanceof WebAssembly.Memory) return w.wasmMemory;
  for (const v of Object.values(w.asm ?? {})) if (v instanceof WebAssembly.Memory) return v;
  return null;
}

/** The SIMD module bound to this wasm backend's heap (built once), or null if it cannot be. */
export function simdFor(backend: object): Simd | null {
  let s = modules.get(backend);
  if (s === undefined) {
    s = null;
    try {
      const memory = memoryOf(backend as WasmBackendInternals);
      if (memory) {
        const module = compileSimdModule(isSharedMemory(memory));
        const pool = poolThreads > 1 && isSharedMemory(memory) ? createKernelPool(memory, module, poolThreads) : null;
        s = { k: buildSimdModule(memory, module), memory, pool };
      }
    } catch {
      s = null;
    }
    modules.set(backend, s);
  }
  return s;
}

/** Byte address of a tensor in the wasm heap. */
export function addr(backend: object, t: TensorInfo): number {
  const d = (backend as WasmBackendInternals).dataIdMap.get(t.dataId);
  if (!d) throw new Error('fused-kernels: tensor is not in the wasm heap');
  return d.memoryOffset;
}

const f32View = (m: WebAssembly.Memory, at: number, n: number) => new Float32Array(m.buffer, at, n);
const fr = Math.fround;

// ------------------------------------------------------------------------------------------
// polynomial: wasm
// ------------------------------------------------------------------------------------------

const polynomialWasm: KernelFunc = ({ inputs, backend }) => {
  const { x, coeffs } = inputs as { x: TensorInfo; coeffs: TensorInfo };
  const b = backend as unknown as WasmBackendInternals;
  const simd = simdFor(b)!;
  const n = tf.util.sizeFromShape(x.shape);
  const deg = tf.util.sizeFromShape(coeffs.shape) - 1;
  const out = b.makeOutput(x.shape, 'float32');
  if (n === 0) return out;
  const xa = addr(b, x);
  const oa = addr(b, out);
  const ca = addr(b, coeffs);
  const n4 = n & ~3;
  const c = Array.from(f32View(simd.memory, ca, deg + 1));
  if (deg > 0) polyForward(simd, xa, oa, n4, ca, c);
  const xs = f32View(simd.memory, xa, n);
  const ys = f32View(simd.memory, oa, n);
  for (let i = deg > 0 ? n4 : 0; i < n; i++) ys[i] = hornerF32(c, xs[i]);
  return out;
};

/** Horner in f32 arithmetic, as the SIMD kernel and the tfjs op-by-op formula compute it. */
function hornerF32(c: number[], x: number): number {
  let y = c[c.length - 1];
  for (let k = c.length - 2; k >= 0; k--) y = fr(fr(y * x) + c[k]);
  return y;
}

const polynomialGradWasm: KernelFunc = ({ inputs, backend }) => {
  const { dy, x, coeffs } = inputs as { dy: TensorInfo; x: TensorInfo; coeffs: TensorInfo };
  const b = backend as unknown as WasmBackendInternals;
  const simd = simdFor(b)!;
  const n = tf.util.sizeFromShape(x.shape);
  const deg = tf.util.sizeFromShape(coeffs.shape) - 1;
  const dx = b.makeOutput(x.shape, 'float32');
  const dc = b.makeOutput(coeffs.shape, 'float32');
  // f64 sums (8 bytes each, +8 for alignment) and f32x4 partial sums (16 each, +16)
  const scratch = b.makeOutput([Math.ceil((8 * (deg + 1) + 8 + 16 * (deg + 1) + 16) / 4)], 'float32');
  try {
    const ca = addr(b, coeffs);
    const c = Array.from(f32View(simd.memory, ca, deg + 1));
    const sa = addr(b, scratch);
    const sums = (sa + 7) & ~7;
    const acc = (sums + 8 * (deg + 1) + 15) & ~15;
    const n4 = n & ~3;
    const xa = addr(b, x);
    const ga = addr(b, dy);
    const da = addr(b, dx);
    const total = new Float64Array(deg + 1);
    if (n4 > 0 && deg > 0) {
      if (deg === 2) simd.k.quad_bwd(xa, ga, da, n4, c[1], c[2], sums);
      else simd.k.poly_bwd(xa, ga, da, n4, ca, deg, sums, acc);
      const view = new DataView(simd.memory.buffer);
      for (let k = 0; k <= deg; k++) total[k] = view.getFloat64(sums + 8 * k, true);
    }
    const xs = f32View(simd.memory, xa, n);
    const gs = f32View(simd.memory, ga, n);
    const ds = f32View(simd.memory, da, n);
    for (let i = deg > 0 ? n4 : 0; i < n; i++) polyGradAt(c, xs[i], gs[i], ds, i, total);
    const out = f32View(simd.memory, addr(b, dc), deg + 1);
    for (let k = 0; k <= deg; k++) out[k] = total[k];
  } finally {
    b.disposeData(scratch.dataId);
  }
  return [dx, dc];
};

/** One element of the backward pass: ds[i] = g p'(x) (f32 Horner), total[k] += g x^k. */
function polyGradAt(c: number[], x: number, g: number, ds: Float32Array, i: number, total: Float64Array): void {
  const deg = c.length - 1;
  let d = deg > 0 ? fr(deg * c[deg]) : 0;
  for (let k = deg - 1; k >= 1; k--) d = fr(fr(d * x) + fr(k * c[k]));
  ds[i] = g * d;
  let p = g;
  for (let k = 0; k <= deg; k++) {
    total[k] += p;
    p = fr(p * x);
  }
}

// ------------------------------------------------------------------------------------------
// polynomial: cpu (plain JS, same arithmetic)
// ------------------------------------------------------------------------------------------

interface CpuBackendLike {
  data: { get(dataId: object): { values: ArrayLike<number> } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: Float32Array): TensorInfo;
}

const polynomialCpu: KernelFunc = ({ inputs, backend }) => {
  const { x, coeffs } = inputs as { x: TensorInfo; coeffs: TensorInfo };
  const b = backend as unknown as CpuBackendLike;
  const xs = b.data.get(x.dataId).values;
  const c = Array.from(b.data.get(coeffs.dataId).values);
  const ys = new Float32Array(xs.length);
  for (let i = 0; i < xs.length; i++) ys[i] = hornerF32(c, xs[i]);
  return b.makeTensorInfo(x.shape, 'float32', ys);
};

const polynomialGradCpu: KernelFunc = ({ inputs, backend }) => {
  const { dy, x, coeffs } = inputs as { dy: TensorInfo; x: TensorInfo; coeffs: TensorInfo };
  const b = backend as unknown as CpuBackendLike;
  const xs = b.data.get(x.dataId).values;
  const gs = b.data.get(dy.dataId).values;
  const c = Array.from(b.data.get(coeffs.dataId).values);
  const ds = new Float32Array(xs.length);
  const total = new Float64Array(c.length);
  for (let i = 0; i < xs.length; i++) polyGradAt(c, xs[i], gs[i], ds, i, total);
  return [b.makeTensorInfo(x.shape, 'float32', ds), b.makeTensorInfo(coeffs.shape, 'float32', Float32Array.from(total))];
};

// ------------------------------------------------------------------------------------------
// Sum / Mean over a run of axes that excludes the last one
// ------------------------------------------------------------------------------------------

/**
 * [outer, rows, cols] view of `shape` reduced over `axes`, when the axes are one contiguous run
 * not containing the last axis and cols % 4 == 0; null otherwise.
 */
export function columnReduction(shape: number[], axis: number | number[]): { outer: number; rows: number; cols: number; kept: number[] } | null {
  const rank = shape.length;
  const axes = tf.util.parseAxisParam(axis, shape).slice().sort((a, b) => a - b);
  if (axes.length === 0 || axes[axes.length - 1] >= rank - 1) return null;
  for (let i = 1; i < axes.length; i++) if (axes[i] !== axes[i - 1] + 1) return null;
  const size = (from: number, to: number) => shape.slice(from, to).reduce((a, b) => a * b, 1);
  const outer = size(0, axes[0]);
  const rows = size(axes[0], axes[axes.length - 1] + 1);
  const cols = size(axes[axes.length - 1] + 1, rank);
  if (cols % 4 !== 0 || rows === 0 || outer * cols === 0) return null;
  return { outer, rows, cols, kept: shape.filter((_, i) => !axes.includes(i)) };
}

function reduceWasm(kind: 'Sum' | 'Mean', original: KernelFunc): KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean };
    const plan = x.dtype === 'float32' ? columnReduction(x.shape, axis) : null;
    const simd = plan ? simdFor(args.backend) : null;
    if (!plan || !simd) return original(args);
    const b = args.backend as unknown as WasmBackendInternals;
    const shape = keepDims ? x.shape.map((d, i) => (tf.util.parseAxisParam(axis, x.shape).includes(i) ? 1 : d)) : plan.kept;
    const out = b.makeOutput(shape, 'float32');
    const xa = addr(b, x);
    const oa = addr(b, out);
    const scale = kind === 'Mean' ? 1 / plan.rows : 1;
    for (let o = 0; o < plan.outer; o++) simd.k.col_sum(xa + o * plan.rows * plan.cols * 4, oa + o * plan.cols * 4, plan.rows, plan.cols, scale);
    return out;
  };
}

// ------------------------------------------------------------------------------------------
// AvgPoolGrad for non-overlapping windows
// ------------------------------------------------------------------------------------------

function avgPoolGradWasm(original: KernelFunc): KernelFunc {
  return (args) => {
    const { dy, input } = args.inputs as { dy: TensorInfo; input: TensorInfo };
    const a = args.attrs as unknown as tf.AvgPoolGradAttrs;
    const k = typeof a.filterSize === 'number' ? [a.filterSize, a.filterSize] : a.filterSize;
    const s = typeof a.strides === 'number' ? [a.strides, a.strides] : a.strides;
    const simd = simdFor(args.backend);
    const [n, h, w, c] = input.shape;
    const ok =
      simd &&
      input.shape.length === 4 &&
      k[0] === k[1] &&
      s[0] === k[0] &&
      s[1] === k[1] &&
      (a.pad === 'valid' || a.pad === 0) &&
      c % 4 === 0 &&
      dy.shape[1] === Math.floor(h / k[0]) &&
      dy.shape[2] === Math.floor(w / k[0]);
    if (!ok) return original(args);
    const b = args.backend as unknown as WasmBackendInternals;
    const out = b.makeOutput(input.shape, 'float32');
    const [oh, ow] = [dy.shape[1], dy.shape[2]];
    const oa = addr(b, out);
    if (oh * k[0] !== h || ow * k[0] !== w) f32View(simd.memory, oa, n * h * w * c).fill(0);
    if (n * oh * ow > 0) simd.k.avgpool_grad(addr(b, dy), oa, n * oh, ow, c, k[0], h, w, oh, 1 / (k[0] * k[0]));
    return out;
  };
}

// ------------------------------------------------------------------------------------------
// batch normalization (training mode)
// ------------------------------------------------------------------------------------------

export const BATCH_NORM = 'HepolyBatchNorm';
export const BATCH_NORM_GRAD = 'HepolyBatchNormGrad';

/** A float32 scratch buffer in the wasm heap, filled by `fill` (k-th block of C values). */
function params(b: WasmBackendInternals, simd: Simd, c: number, blocks: ArrayLike<number>[]): TensorInfo {
  const t = b.makeOutput([c * blocks.length], 'float32');
  const v = f32View(simd.memory, addr(b, t), c * blocks.length);
  blocks.forEach((blk, k) => v.set(blk, k * c));
  return t;
}

function invStd(variance: Float32Array, epsilon: number): Float32Array {
  const eps = fr(epsilon);
  return variance.map((v) => fr(1 / fr(Math.sqrt(fr(v + eps)))));
}

/**
 * {x [.., C], gamma [C], beta [C]} -> [y, mean, variance] over all axes but the last:
 * mean and (biased) variance in two column passes, y = ((x - mean) invStd) gamma + beta in
 * one more, where tfjs ran ~6 full-size element-wise ops and their ~10 autodiff twins.
 */
const batchNormWasm: KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, gamma, beta } = inputs as { x: TensorInfo; gamma: TensorInfo; beta: TensorInfo };
  const { epsilon } = attrs as unknown as { epsilon: number };
  const b = backend as unknown as WasmBackendInternals;
  const simd = simdFor(b)!;
  const c = x.shape[x.shape.length - 1];
  const rows = tf.util.sizeFromShape(x.shape) / c;
  const mean = b.makeOutput([c], 'float32');
  const variance = b.makeOutput([c], 'float32');
  const y = b.makeOutput(x.shape, 'float32');
  const xa = addr(b, x);
  const scratch = b.makeOutput([REDUCE_CHUNKS * c], 'float32');
  let p: TensorInfo | null = null;
  try {
    const sa = addr(b, scratch);
    const sum = columnReduce(simd, 'col_sum', (lo, n, out) => [xa + lo * c * 4, out, n, c, 1], rows, c, sa);
    f32View(simd.memory, addr(b, mean), c).set(sum.map((v) => v / rows));
    const sq = columnReduce(simd, 'col_sqdev', (lo, n, out) => [xa + lo * c * 4, addr(b, mean), out, n, c, 1], rows, c, sa);
    f32View(simd.memory, addr(b, variance), c).set(sq.map((v) => v / rows));
    const view = (t: TensorInfo) => f32View(simd.memory, addr(b, t), c).slice();
    p = params(b, simd, c, [view(mean), invStd(view(variance), epsilon), view(gamma), view(beta)]);
    bnApply(simd, xa, addr(b, p), addr(b, y), rows, c);
  } finally {
    b.disposeData(scratch.dataId);
    if (p) b.disposeData(p.dataId);
  }
  return [y, mean, variance];
};

/**
 * {dy, x, gamma, mean, variance} -> [dx, dgamma, dbeta], the closed form of
 * src/layers/batchnorm.ts: dbeta = sum(dy), dgamma = sum(dy xhat) in one column pass,
 *   dx = gamma invStd ((dy - dbeta/n) - xhat dgamma/n)
 * in one more (xhat recomputed from x, so the forward pass need not store it).
 */
const batchNormGradWasm: KernelFunc = ({ inputs, backend, attrs }) => {
  const { dy, x, gamma, mean, variance } = inputs as Record<string, TensorInfo>;
  const { epsilon } = attrs as unknown as { epsilon: number };
  const b = backend as unknown as WasmBackendInternals;
  const simd = simdFor(b)!;
  const c = x.shape[x.shape.length - 1];
  const rows = tf.util.sizeFromShape(x.shape) / c;
  const view = (t: TensorInfo) => f32View(simd.memory, addr(b, t), c).slice();
  const m = view(mean);
  const s = invStd(view(variance), epsilon);
  const g = view(gamma);
  const dx = b.makeOutput(x.shape, 'float32');
  const dgamma = b.makeOutput(gamma.shape, 'float32');
  const dbeta = b.makeOutput(gamma.shape, 'float32');
  const p1 = params(b, simd, c, [m, s]);
  const sums = b.makeOutput([REDUCE_CHUNKS * 2 * c], 'float32');
  let p2: TensorInfo | null = null;
  try {
    const [dya, xa] = [addr(b, dy), addr(b, x)];
    const sv = Float32Array.from(columnReduce(simd, 'bn_grad_sums', (lo, n, out) => [dya + lo * c * 4, xa + lo * c * 4, addr(b, p1), out, n, c, 1], rows, 2 * c, addr(b, sums)));
    const db = sv.subarray(0, c);
    const dg = sv.subarray(c, 2 * c);
    f32View(simd.memory, addr(b, dbeta), c).set(db);
    f32View(simd.memory, addr(b, dgamma), c).set(dg);
    const k1 = g.map((gi, i) => fr(gi * s[i]));
    const m1 = db.map((v) => fr(v / rows));
    const m2 = dg.map((v) => fr(v / rows));
    p2 = params(b, simd, c, [m, s, k1, m1, m2]);
    bnGradDx(simd, addr(b, dy), addr(b, x), addr(b, p2), addr(b, dx), rows, c);
  } finally {
    b.disposeData(p1.dataId);
    b.disposeData(sums.dataId);
    if (p2) b.disposeData(p2.dataId);
  }
  return [dx, dgamma, dbeta];
};

let bnGradDone = false;

function registerBatchNormGradient(): void {
  if (bnGradDone) return;
  bnGradDone = true;
  tf.registerGradient({
    kernelName: BATCH_NORM,
    inputsToSave: ['x', 'gamma'],
    outputsToSave: [false, true, true],
    gradFunc: (dys, saved, attrs) => {
      const [dy, dmean, dvar] = Array.isArray(dys) ? dys : [dys];
      const [x, gamma, mean, variance] = saved;
      const [dxY, dgamma, dbeta] = tf.engine().runKernel(BATCH_NORM_GRAD, { dy, x, gamma, mean, variance }, attrs) as tf.Tensor[];
      let dx = dxY;
      // The statistics are outputs too: their own gradients (zero in training, where only y
      // reaches the loss) are d mean/dx = 1/n, d var/dx = 2 (x - mean)/n.
      const nonzero = (t: tf.Tensor | undefined) => t !== undefined && (t.dataSync() as Float32Array).some((v) => v !== 0);
      const n = x.size / x.shape[x.rank - 1];
      if (nonzero(dmean)) dx = tf.add(dx, tf.div(dmean, n));
      if (nonzero(dvar)) dx = tf.add(dx, tf.mul(tf.sub(x, mean), tf.div(tf.mul(dvar, 2), n)));
      return { x: () => dx, gamma: () => dgamma, beta: () => dbeta };
    },
  });
}

/**
 * Training-mode batch normalization with the fused wasm kernels: the same contract (and
 * formulas) as src/layers/batchnorm.ts batchNormTrain, or null where they do not apply
 * (another backend, not float32, channels not a multiple of 4) and batchNormTrain is used.
 */
export function batchNormTrainFused(
  x: tf.Tensor,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  epsilon: number,
): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } | null {
  const c = x.shape[x.rank - 1];
  if (x.rank < 2 || c % 4 !== 0 || x.dtype !== 'float32' || x.size === 0 || tf.getKernel(BATCH_NORM, tf.getBackend()) === undefined) return null;
  const [y, mean, variance] = tf.engine().runKernel(BATCH_NORM, { x, gamma, beta }, { epsilon }) as tf.Tensor[];
  return { y, mean, variance };
}

// ------------------------------------------------------------------------------------------
// Identity, Cast to the same dtype: share the data
// ------------------------------------------------------------------------------------------

/**
 * tfjs-backend-wasm copies the tensor for Identity and for a Cast to the same dtype; the cpu
 * backend shares the buffer (refcounted, as Reshape does on wasm too): tensors are immutable.
 * The engine clones every tensor a gradient needs (inputsToSave / outputsToSave) with
 * Identity, so on wasm a training step copied most of its activations once more.
 */
function shareSameDtype(original: KernelFunc): KernelFunc {
  return (args) => {
    const { x } = args.inputs as { x: TensorInfo };
    const dtype = (args.attrs as { dtype?: tf.DataType } | undefined)?.dtype ?? x.dtype;
    if (x.dtype === 'string' || dtype !== x.dtype) return original(args);
    (args.backend as unknown as { incRef(dataId: object): void }).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  };
}

// ------------------------------------------------------------------------------------------
// registration
// ------------------------------------------------------------------------------------------

function replaceKernel(name: string, backendName: string, make: (original: KernelFunc) => KernelFunc): void {
  const existing = tf.getKernel(name, backendName);
  if (!existing) return;
  const original = existing.kernelFunc;
  tf.unregisterKernel(name, backendName);
  tf.registerKernel({ ...existing, kernelFunc: make(original) });
}

let wasmDone = false;
let cpuDone = false;
let gradDone = false;

/** The gradient of HepolyPolynomial: one HepolyPolynomialGrad call gives both input gradients. */
function registerPolynomialGradient(): void {
  if (gradDone) return;
  gradDone = true;
  tf.registerGradient({
    kernelName: POLYNOMIAL,
    inputsToSave: ['x', 'coeffs'],
    gradFunc: (dy, saved) => {
      const [x, coeffs] = saved;
      const [dx, dc] = tf.engine().runKernel(POLYNOMIAL_GRAD, { dy: dy as tf.Tensor, x, coeffs }) as tf.Tensor[];
      return { x: () => dx, coeffs: () => dc };
    },
  });
}

/**
 * Registers the polynomial kernels (wasm and cpu) and the wasm fast paths. Returns false on
 * wasm if the SIMD module cannot be built (then nothing is registered there).
 */
export function registerFusedKernels(backendName: 'wasm' | 'cpu'): boolean {
  registerPolynomialGradient();
  registerBatchNormGradient();
  if (backendName === 'cpu') {
    if (!cpuDone && tf.findBackend('cpu')) {
      cpuDone = true;
      tf.registerKernel({ kernelName: POLYNOMIAL, backendName: 'cpu', kernelFunc: polynomialCpu });
      tf.registerKernel({ kernelName: POLYNOMIAL_GRAD, backendName: 'cpu', kernelFunc: polynomialGradCpu });
    }
    return true;
  }
  if (wasmDone) return true;
  const backend = tf.findBackend('wasm');
  if (!backend || !simdFor(backend)) return false;
  wasmDone = true;
  tf.registerKernel({ kernelName: POLYNOMIAL, backendName: 'wasm', kernelFunc: polynomialWasm });
  tf.registerKernel({ kernelName: POLYNOMIAL_GRAD, backendName: 'wasm', kernelFunc: polynomialGradWasm });
  tf.registerKernel({ kernelName: BATCH_NORM, backendName: 'wasm', kernelFunc: batchNormWasm });
  tf.registerKernel({ kernelName: BATCH_NORM_GRAD, backendName: 'wasm', kernelFunc: batchNormGradWasm });
  replaceKernel('Sum', 'wasm', (o) => reduceWasm('Sum', o));
  replaceKernel('Mean', 'wasm', (o) => reduceWasm('Mean', o));
  replaceKernel('AvgPoolGrad', 'wasm', avgPoolGradWasm);
  replaceKernel('Identity', 'wasm', shareSameDtype);
  replaceKernel('Cast', 'wasm', shareSameDtype);
  return true;
}

/** True when the active backend runs HepolyPolynomial (polynomial.ts then uses it). */
export function hasFusedPolynomial(): boolean {
  return tf.getKernel(POLYNOMIAL, tf.getBackend()) !== undefined;
}

/** Threads the convolution kernels of `backend` run on (1 without a kernel pool). */
export function kernelThreads(backend: object): number {
  return simdFor(backend)?.pool?.threads ?? 1;
}
