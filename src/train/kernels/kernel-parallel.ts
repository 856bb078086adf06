/**
 * How each multi-threaded SIMD kernel is split across the threads of a KernelPool. Only
 * output elements are split (never a sum), so the result is bit-for-bit that of one thread:
 *
 *   conv_fwd          over samples: y[n] depends on x[n] only;
 *   conv_input_grad   over samples: dx[n] depends on dy[n] only;
 *   conv_filter_grad  over output channels: dW[.., co] for co in a range (multiples of 4);
 *   bn_apply, bn_grad_dx  over rows (the column statistics are computed before, once).
 *
 * Without a pool (single-threaded wasm build, or one thread asked for) each runs whole here.
 */
import type { Simd } from './fused-kernels.js';
import { splitRange, type KernelName } from './kernel-pool.js';

/** Output channels per part below which a 16-channel block would be split into 4-wide ones. */
const WIDE_BLOCK = 16;
/** Rows per part below which a row map is not worth waking a helper for. */
const MIN_ROWS_PER_PART = 256;
/** Elements per part below which an element map is not worth waking a helper for. */
const MIN_ELEMENTS_PER_PART = 16 * MIN_ROWS_PER_PART;

export function runParts(simd: Simd, fn: KernelName, parts: number[][]): void {
  if (parts.length === 0) return; // nothing to do: an empty range split into no parts
  if (simd.pool && parts.length > 1) simd.pool.run(fn, parts);
  else (simd.k[fn] as (...args: number[]) => void)(...parts[0]);
}

export const threadsOf = (simd: Simd) => simd.pool?.threads ?? 1;

/** conv_fwd(x, w, y, N, H, W, Ci, OH, OW, Co, KH, KW, sh, sw, pt, owRange) over all samples. */
export function convForward(simd: Simd, args: number[]): void {
  const [x, w, y, n, h, wd, ci, oh, ow, co, ...rest] = args;
  const parts = splitRange(n, threadsOf(simd)).map(([lo, hi]) => [x + lo * h * wd * ci * 4, w, y + lo * oh * ow * co * 4, hi - lo, h, wd, ci, oh, ow, co, ...rest]);
  runParts(simd, 'conv_fwd', parts);
}

/** conv_input_grad(dy, wT, dx, N, H, W, Ci, OH, OW, Co, KH, KW, sh, sw, pt, owRange) over all samples. */
export function convInputGrad(simd: Simd, args: number[]): void {
  const [dy, wT, dx, n, h, w, ci, oh, ow, co, ...rest] = args;
  const parts = splitRange(n, threadsOf(simd)).map(([lo, hi]) => [dy + lo * oh * ow * co * 4, wT, dx + lo * h * w * ci * 4, hi - lo, h, w, ci, oh, ow, co, ...rest]);
  runParts(simd, 'conv_input_grad', parts);
}

/** conv_filter_grad(x, dy, dw, N, H, W, Ci, OH, OW, Co, KH, KW, sh, sw, pt, owRange) over all output channels. */
export function convFilterGrad(simd: Simd, args: number[]): void {
  const co = args[9];
  // the kernel's 16-wide channel blocks only: 4-wide parts measured slower on two threads
  // than the whole on one (e.g. a first layer's 3 -> 16 channels: 5.3 against 3.5 ms)
  const threads = co >= WIDE_BLOCK * threadsOf(simd) ? threadsOf(simd) : 1;
  runParts(simd, 'conv_filter_grad', splitRange(co, threads, WIDE_BLOCK).map(([lo, hi]) => [...args, lo, hi]));
}

function rowRanges(simd: Simd, rows: number): [number, number][] {
  return splitRange(rows, rows >= 2 * MIN_ROWS_PER_PART ? threadsOf(simd) : 1);
}

/**
 * The polynomial with coefficients c (also at `coef` in memory) over n4 elements (n4 % 4 == 0):
 * quad_fwd on one thread, else poly_fwd split by element ranges (the pool passes integer
 * arguments only, and poly_fwd reads its coefficients from memory; both are the same Horner
 * steps, so the bits agree).
 */
export function polyForward(simd: Simd, x: number, out: number, n4: number, coef: number, c: number[]): void {
  const parts = splitRange(n4, n4 >= 2 * MIN_ELEMENTS_PER_PART ? threadsOf(simd) : 1, 4);
  const deg = c.length - 1;
  if (parts.length === 1 && deg === 2) simd.k.quad_fwd(x, out, n4, c[0], c[1], c[2]);
  else runParts(simd, 'poly_fwd', parts.map(([lo, hi]) => [x + lo * 4, out + lo * 4, hi - lo, coef, deg]));
}

/** Fixed chunks of rows of a column reduction: the partial sums, hence the bits, do not depend on the threads. */
export const REDUCE_CHUNKS = 4;

/**
 * A column reduction (col_sum, col_sqdev, bn_grad_sums) over all rows as REDUCE_CHUNKS fixed
 * chunks of rows (one where there are few rows), whose partial sums are added in f64 in chunk
 * order. `call(rowLo, rowCount, out)` gives one chunk's arguments (with scale 1); each
 * partial is `width` floats, REDUCE_CHUNKS of them at `scratch`. Returns the f64 totals.
 */
export function columnReduce(simd: Simd, fn: 'col_sum' | 'col_sqdev' | 'bn_grad_sums', call: (lo: number, count: number, out: number) => number[], rows: number, width: number, scratch: number): Float64Array {
  const chunks = splitRange(rows, rows >= REDUCE_CHUNKS * MIN_ROWS_PER_PART ? REDUCE_CHUNKS : 1);
  const calls = chunks.map(([lo, hi], k) => call(lo, hi - lo, scratch + k * width * 4));
  const threads = threadsOf(simd);
  for (let i = 0; i < calls.length; i += threads) runParts(simd, fn, calls.slice(i, i + threads));
  const total = new Float64Array(width);
  chunks.forEach((_, k) => {
    const part = new Float32Array(simd.memory.buffer, scratch + k * width * 4, width);
    for (let e = 0; e < width; e++) total[e] += part[e];
  });
  return total;
}

/** bn_apply(x, params, y, rows, C) over all rows. */
export function bnApply(simd: Simd, x: number, params: number, y: number, rows: number, c: number): void {
  runParts(simd, 'bn_apply', rowRanges(simd, rows).map(([lo, hi]) => [x + lo * c * 4, params, y + lo * c * 4, hi - lo, c]));
}

/** bn_grad_dx(dy, x, params, dx, rows, C) over all rows. */
export function bnGradDx(simd: Simd, dy: number, x: number, params: number, dx: number, rows: number, c: number): void {
  runParts(simd, 'bn_grad_dx', rowRanges(simd, rows).map(([lo, hi]) => [dy + lo * c * 4, x + lo * c * 4, params, dx + lo * c * 4, hi - lo, c]));
}
