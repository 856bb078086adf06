/**
 * How each multi-threaded SIMD kernel is split across the threads of a KernelPool. Only
 * output elements are split (never a sum), so the result is bit-for-bit that of one thread:
 *
 *   conv_filter_grad  over output channels: dW[.., co] for co in a range (multiples of 4);
 *   conv_input_grad   over samples: dx[n] depends on dy[n] only;
 *   conv_fwd          over samples.
 *
 * Without a pool (single-threaded wasm build, or one thread asked for) each runs whole here.
 */
import type { Simd } from './fused-kernels.js';
import { splitRange } from './kernel-pool.js';

/** Output channels per part below which a 16-channel block would be split into 4-wide ones. */
const WIDE_BLOCK = 16;

/** conv_filter_grad(x, dy, dw, N, H, W, Ci, OH, OW, Co, KH, KW, sh, sw, pt, owRange) over all output channels. */
export function convFilterGrad(simd: Simd, args: number[]): void {
  const co = args[9];
  const threads = simd.pool?.threads ?? 1;
  // keep the kernel's 16-wide channel blocks where every part still gets whole blocks
  const align = co >= WIDE_BLOCK * threads ? WIDE_BLOCK : 4;
  const parts = splitRange(co, threads, align).map(([lo, hi]) => [...args, lo, hi]);
  if (simd.pool && parts.length > 1) simd.pool.run('conv_filter_grad', parts);
  else simd.k.conv_filter_grad(...parts[0]);
}

/** conv_input_grad(dy, wT, dx, N, H, W, Ci, OH, OW, Co, KH, KW, sh, sw, pt, owRange) over all samples. */
export function convInputGrad(simd: Simd, args: number[]): void {
  const [dy, wT, dx, n, h, w, ci, oh, ow, co, ...rest] = args;
  const parts = splitRange(n, simd.pool?.threads ?? 1).map(([lo, hi]) => [dy + lo * oh * ow * co * 4, wT, dx + lo * h * w * ci * 4, hi - lo, h, w, ci, oh, ow, co, ...rest]);
  if (simd.pool && parts.length > 1) simd.pool.run('conv_input_grad', parts);
  else simd.k.conv_input_grad(...parts[0]);
}

/** conv_fwd(x, w, y, N, H, W, Ci, OH, OW, Co, KH, KW, sh, sw, pt, owRange) over all samples. */
export function convForward(simd: Simd, args: number[]): void {
  const [x, w, y, n, h, wd, ci, oh, ow, co, ...rest] = args;
  const parts = splitRange(n, simd.pool?.threads ?? 1).map(([lo, hi]) => [x + lo * h * wd * ci * 4, w, y + lo * oh * ow * co * 4, hi - lo, h, wd, ci, oh, ow, co, ...rest]);
  if (simd.pool && parts.length > 1) simd.pool.run('conv_fwd', parts);
  else simd.k.conv_fwd(...parts[0]);
}
