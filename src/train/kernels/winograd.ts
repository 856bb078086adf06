/**
 * 3x3 stride-1 convolutions by Winograd's F(m x m, 3x3) on the wasm backend (m = 4 by
 * default, 2 on request): forward, input gradient and filter gradient, each an input
 * transform, (m + 2)^2 channel products and a transform back, per block of tiles
 * (winograd-kernels.ts). F(4x4) does 36 multiplications per 16 outputs and channel pair
 * where a direct convolution does 144 (F(2x2): 16 per 4). The direct kernels of
 * simd-kernels.ts stay for every other convolution.
 *
 *   forward  Y  = A^T [ (G g G^T) (.) (B^T d B) ] A, summed over input channels;
 *   dx       the forward on dy with the filter turned by 180 degrees and its channels
 *            swapped, padded by 2 - pad;
 *   dW       G^T [ sum over tiles (B^T d B) (.) (A dY A^T) ] G (the forward is linear in g).
 *
 * The filter transforms and dW's sum over chunks are the kernel `lincomb`. Threads split
 * tiles by sample, dW by fixed chunks of samples and lincomb by elements, never one sum, so
 * every thread count gives the same bits (kernel-parallel.ts). F(4x4)'s error is ~30x
 * F(2x2)'s (relative 6e-6 against 5e-7 at 64 channels, test/train/winograd.test.ts), well
 * inside what f32 training tolerates.
 */
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { addr, type Simd, type WasmBackendInternals } from './fused-kernels.js';
import { runParts, threadsOf } from './kernel-parallel.js';
import { splitRange } from './kernel-pool.js';
import { KernelScope } from './kernel-scope.js';
import { F2 as KERNEL_F2, F4 as KERNEL_F4, type Variant as KernelVariant } from './winograd-kernels.js';

/** An F(m x m, 3x3) as the driver sees it: its kernels and the filter transform's coefficients. */
interface Variant {
  m: 2 | 4;
  forward: 'wino_fwd2' | 'wino_fwd4';
  filterGrad: 'wino_dw2' | 'wino_dw4';
  /** coef[xi][tap] = G[i][a] G[j][b] for xi = (m + 2) i + j, tap = 3 a + b: U = G g G^T */
  coef: number[][];
  /** coefT[tap][xi] = coef[xi][tap]: dW = G^T dU G */
  coefT: number[][];
  /** coefTurned[xi][tap] = coef[xi][8 - tap]: U of the filter turned by 180 degrees (dx) */
  coefTurned: number[][];
}

function variant({ m, G }: KernelVariant): Variant {
  const a = m + 2;
  const coef = Array.from({ length: a * a }, (_, xi) => Array.from({ length: 9 }, (_, tap) => G[Math.floor(xi / a)][Math.floor(tap / 3)] * G[xi % a][tap % 3]));
  const coefT = coef[0].map((_, tap) => coef.map((row) => row[tap]));
  return { m, forward: `wino_fwd${m}`, filterGrad: `wino_dw${m}`, coef, coefT, coefTurned: coef.map((row) => [...row].reverse()) };
}

const F2 = variant(KERNEL_F2);
const F4 = variant(KERNEL_F4);
/** Input channels below which the transforms cost more than the products save. */
const MIN_CHANNELS = 8;
/**
 * Samples per partial sum of dW: at least 16, and at most 8 partials (their memory is
 * planes x Ci x Co floats each). It depends on the batch only, so every thread count adds
 * in the same order.
 */
const dwChunk = (n: number) => Math.max(16, Math.ceil(n / 8));
/** Floats of one block's scratch (192 KiB): about what stays in a core's L2 beside the filter. */
const BLOCK_FLOATS = 48 * 1024;

/** A 3x3 convolution's sizes, NHWC; pt, pl: padding above and left. */
export interface WinogradShape {
  n: number;
  h: number;
  w: number;
  ci: number;
  oh: number;
  ow: number;
  co: number;
  pt: number;
  pl: number;
}

interface ConvLike {
  padInfo: { top: number; left: number };
  filterHeight: number;
  filterWidth: number;
  strideHeight: number;
  strideWidth: number;
  dilationHeight: number;
  dilationWidth: number;
  inChannels: number;
  outChannels: number;
  dataFormat: string;
}

/** Which Winograd convolutions run: F(4x4, 3x3) unless HEPOLY_WINOGRAD says 2 or 0 (off). */
export type WinogradMode = 0 | 2 | 4;
let mode: WinogradMode = process.env.HEPOLY_WINOGRAD === '0' ? 0 : process.env.HEPOLY_WINOGRAD === '2' ? 2 : 4;

/** Benchmarks and tests compare the variants and the direct kernels in one process. */
export function setWinograd(m: WinogradMode): void {
  mode = m;
}

/** Whether a convolution goes to Winograd here: NHWC 3x3, stride and dilation 1, channels % 4. */
export function winogradApplies(info: ConvLike): boolean {
  return (
    mode !== 0 &&
    info.dataFormat === 'channelsLast' &&
    info.filterHeight === 3 &&
    info.filterWidth === 3 &&
    info.strideHeight === 1 &&
    info.strideWidth === 1 &&
    info.dilationHeight === 1 &&
    info.dilationWidth === 1 &&
    info.inChannels % 4 === 0 &&
    info.outChannels % 4 === 0 &&
    Math.min(info.inChannels, info.outChannels) >= MIN_CHANNELS
  );
}

/** The sizes of a convolution described by tfjs's Conv2DInfo. */
export function winogradShape(info: ConvLike & { batchSize: number; inHeight: number; inWidth: number; outHeight: number; outWidth: number }): WinogradShape {
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow, outChannels: co } = info;
  return { n, h, w, ci, oh, ow, co, pt: info.padInfo.top, pl: info.padInfo.left };
}

/** A kernel scope that also allocates float32 temporaries and views them in the wasm heap. */
class Heap extends KernelScope {
  constructor(
    readonly simd: Simd,
    readonly b: WasmBackendInternals,
  ) {
    super(b);
  }
  alloc(shape: number[], zero = false): TensorInfo {
    const t = this.adopt(this.b.makeOutput(shape, 'float32'));
    if (zero) this.f32(t).fill(0);
    return t;
  }
  /** a view, valid until the next allocation (the heap may grow) */
  f32(t: TensorInfo): Float32Array {
    return new Float32Array(this.simd.memory.buffer, addr(this.b, t), t.shape.reduce((p, q) => p * q, 1));
  }
  at(t: TensorInfo): number {
    return addr(this.b, t);
  }
}

/** fn with a Heap of temporaries, freed after it; fn returns a tensor it kept. */
function withHeap(simd: Simd, b: WasmBackendInternals, fn: (heap: Heap, v: Variant) => TensorInfo): TensorInfo {
  const heap = new Heap(simd, b);
  try {
    return heap.keep(fn(heap, variantFor()));
  } finally {
    heap.dispose();
  }
}

const planesOf = (v: Variant) => (v.m + 2) * (v.m + 2);
const tilesOf = (s: WinogradShape, v: Variant) => ({ th: Math.ceil(s.oh / v.m), tw: Math.ceil(s.ow / v.m) });

function variantFor(): Variant {
  return mode === 2 ? F2 : F4;
}

/** Tiles per block: a block's transformed tiles and products (planes x BT x (Ci + Co) floats) stay in L2. */
function blockTiles(v: Variant, ci: number, co: number): number {
  return Math.max(2, Math.floor(BLOCK_FLOATS / (planesOf(v) * (ci + co)) / 2) * 2);
}

/** A block's scratch per thread: transformed tiles, then products (or transformed dy). */
function scratch(heap: Heap, v: Variant, parts: number, bt: number, s: WinogradShape): [number, number][] {
  const planes = planesOf(v);
  return Array.from({ length: parts }, () => [heap.at(heap.alloc([planes * bt * s.ci])), heap.at(heap.alloc([planes * bt * s.co]))]);
}

/** The forward convolution of x (NHWC at `x`) by the transformed filter u ([planes][ci][co]). */
function forwardTiles(heap: Heap, v: Variant, x: number, u: TensorInfo, s: WinogradShape): TensorInfo {
  const { th, tw } = tilesOf(s, v);
  const bt = blockTiles(v, s.ci, s.co);
  const parts = splitRange(s.n, threadsOf(heap.simd));
  const zeros = heap.alloc([s.ci], true);
  const y = heap.alloc([s.n, s.oh, s.ow, s.co]);
  const buffers = scratch(heap, v, parts.length, bt, s);
  // a sink per thread, so that threads never write the same cache lines
  const sinks = parts.map(() => heap.at(heap.alloc([s.co])));
  const args = parts.map(([lo, hi], p) => [x, heap.at(u), heap.at(y), lo, hi, s.h, s.w, s.ci, s.oh, s.ow, s.co, th, tw, s.pt, s.pl, heap.at(zeros), sinks[p], ...buffers[p], bt]);
  runParts(heap.simd, v.forward, args);
  return y;
}

/**
 * dst_d = sum over s of coef[d][s] * src_s, vectors of `len` floats at `stride` apart, in
 * the kernel `lincomb`, split by element range over the threads.
 */
function lincomb(heap: Heap, src: number, srcStride: number, dst: number, dstStride: number, coef: number[][], len: number): void {
  const table = heap.alloc([coef.length * coef[0].length]);
  heap.f32(table).set(coef.flat());
  const parts = splitRange(len, threadsOf(heap.simd), 4).map(([lo, hi]) => [src, srcStride, coef[0].length, dst, dstStride, coef.length, heap.at(table), lo, hi]);
  runParts(heap.simd, 'lincomb', parts);
}

/** u = G g G^T per channel pair ([planes][P][Q]) from 9 taps of [P][Q] at `taps`, by `coef` (v.coef or v.coefTurned). */
function transformFilter(heap: Heap, coef: number[][], taps: number, u: TensorInfo, pq: number): void {
  lincomb(heap, taps, pq, heap.at(u), pq, coef, pq);
}

/** Conv2D of x by filter ([3, 3, ci, co]), both tensors in the wasm heap. */
export function winogradConv2D(simd: Simd, b: WasmBackendInternals, x: TensorInfo, filter: TensorInfo, s: WinogradShape): TensorInfo {
  return withHeap(simd, b, (heap, v) => {
    const u = heap.alloc([planesOf(v), s.ci, s.co]);
    transformFilter(heap, v.coef, heap.at(filter), u, s.ci * s.co);
    return forwardTiles(heap, v, heap.at(x), u, s);
  });
}

/** Conv2DBackpropInput: dx ([n, h, w, ci]) from dy ([n, oh, ow, co]) and filter ([3, 3, ci, co]). */
export function winogradInputGrad(simd: Simd, b: WasmBackendInternals, dy: TensorInfo, filter: TensorInfo, s: WinogradShape): TensorInfo {
  return withHeap(simd, b, (heap, v) => {
    const u = heap.alloc([planesOf(v), s.co, s.ci]);
    // the turned filter's tap k is g's tap 8 - k with [ci][co] swapped: swap here, and
    // coefTurned reads the taps backwards
    const swapped = heap.transpose(filter, [0, 1, 3, 2]);
    transformFilter(heap, v.coefTurned, heap.at(swapped), u, s.ci * s.co);
    const shape: WinogradShape = { n: s.n, h: s.oh, w: s.ow, ci: s.co, oh: s.h, ow: s.w, co: s.ci, pt: 2 - s.pt, pl: 2 - s.pl };
    return forwardTiles(heap, v, heap.at(dy), u, shape);
  });
}

/** Conv2DBackpropFilter: dW ([3, 3, ci, co]) from x ([n, h, w, ci]) and dy ([n, oh, ow, co]). */
export function winogradFilterGrad(simd: Simd, b: WasmBackendInternals, x: TensorInfo, dy: TensorInfo, s: WinogradShape): TensorInfo {
  return withHeap(simd, b, (heap, v) => {
    const { th, tw } = tilesOf(s, v);
    const bt = blockTiles(v, s.ci, s.co);
    const chunk = dwChunk(s.n);
    const chunks = Math.ceil(s.n / chunk);
    const parts = splitRange(chunks, threadsOf(simd));
    const du = heap.alloc([chunks, planesOf(v), s.ci, s.co]);
    const zeros = heap.alloc([Math.max(s.ci, s.co)], true);
    const buffers = scratch(heap, v, parts.length, bt, s);
    const args = parts.map(([lo, hi], p) => [heap.at(x), heap.at(dy), heap.at(du), lo, hi, chunk, s.n, s.h, s.w, s.ci, s.oh, s.ow, s.co, th, tw, s.pt, s.pl, heap.at(zeros), ...buffers[p], bt]);
    runParts(simd, v.filterGrad, args);
    const pq = s.ci * s.co;
    const planes = planesOf(v);
    const sum = heap.alloc([planes, pq]);
    lincomb(heap, heap.at(du), planes * pq, heap.at(sum), 0, [new Array(chunks).fill(1)], planes * pq);
    const dw = heap.alloc([3, 3, s.ci, s.co]);
    lincomb(heap, heap.at(sum), pq, heap.at(dw), pq, v.coefT, pq);
    return dw;
  });
}
