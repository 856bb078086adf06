/**
 * 3x3 stride-1 convolutions by Winograd's F(2x2, 3x3) on the wasm backend: forward, input
 * gradient and filter gradient, each a transform, 16 channel products (wino_gemm) and a
 * transform back (winograd-kernels.ts). 2.25x fewer multiplications than the direct
 * kernels of simd-kernels.ts, which stay for every other convolution.
 *
 *   forward  Y  = A^T [ (G g G^T) (.) (B^T d B) ] A, summed over input channels;
 *   dx       the forward on dy with the filter turned by 180 degrees and its channels
 *            swapped, padded by 2 - pad;
 *   dW       G^T [ sum over tiles (B^T d B) (.) (A dY A^T) ] G (the forward is linear in g).
 *
 * The filter transforms are small (16 x Ci x Co) and done here in JS. Threads split the
 * tiles by sample and the products by xi, never a sum, so every thread count gives the same
 * bits (kernel-parallel.ts).
 */
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { addr, type Simd, type WasmBackendInternals } from './fused-kernels.js';
import { runParts, threadsOf } from './kernel-parallel.js';
import { splitRange } from './kernel-pool.js';

/** G of F(2x2, 3x3): U = G g G^T. */
const G = [
  [1, 0, 0],
  [0.5, 0.5, 0.5],
  [0.5, -0.5, 0.5],
  [0, 0, 1],
];
/** COEF[xi][tap] = G[i][a] G[j][b] for xi = 4 i + j, tap = 3 a + b. */
const COEF = Array.from({ length: 16 }, (_, xi) => Array.from({ length: 9 }, (_, tap) => G[xi >> 2][Math.floor(tap / 3)] * G[xi & 3][tap % 3]));
/** Input channels below which the transforms cost more than the products save. */
const MIN_CHANNELS = 8;
/** Samples per partial sum of dW: fixed, so that every thread count adds in the same order. */
const DW_CHUNK = 16;
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

let enabled = process.env.HEPOLY_WINOGRAD !== '0';

/** Turns the Winograd path on or off (benchmarks and tests compare it with the direct kernels). */
export function setWinograd(on: boolean): void {
  enabled = on;
}

/** Whether a convolution goes to Winograd here: NHWC 3x3, stride and dilation 1, channels % 4. */
export function winogradApplies(info: ConvLike): boolean {
  return (
    enabled &&
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

/** Temporaries in the wasm heap, freed together. */
class Heap {
  private readonly temps: TensorInfo[] = [];
  constructor(
    readonly simd: Simd,
    readonly b: WasmBackendInternals,
  ) {}
  alloc(shape: number[], zero = false): TensorInfo {
    const t = this.b.makeOutput(shape, 'float32');
    this.temps.push(t);
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
  /** keeps t as a result */
  keep(t: TensorInfo): TensorInfo {
    this.temps.splice(this.temps.indexOf(t), 1);
    return t;
  }
  dispose(): void {
    for (const t of this.temps) this.b.disposeData(t.dataId);
  }
}

const tilesOf = (s: WinogradShape) => ({ th: Math.ceil(s.oh / 2), tw: Math.ceil(s.ow / 2) });

/** Tiles per block: a block's transformed tiles and products (16 x BT x (Ci + Co) floats) stay in L2. */
function blockTiles(ci: number, co: number): number {
  return Math.max(2, Math.floor(BLOCK_FLOATS / (16 * (ci + co)) / 2) * 2);
}

/** A block's scratch per thread: transformed tiles, then products (or transformed dy). */
function scratch(heap: Heap, parts: number, bt: number, s: WinogradShape): [number, number][] {
  return Array.from({ length: parts }, () => [heap.at(heap.alloc([16 * bt * s.ci])), heap.at(heap.alloc([16 * bt * s.co]))]);
}

/** The forward convolution of x (NHWC at `x`) by the transformed filter u ([16][ci][co]). */
function forwardTiles(heap: Heap, x: number, u: TensorInfo, s: WinogradShape): TensorInfo {
  const { th, tw } = tilesOf(s);
  const bt = blockTiles(s.ci, s.co);
  const parts = splitRange(s.n, threadsOf(heap.simd));
  const zeros = heap.alloc([s.ci], true);
  const sink = heap.alloc([s.co]);
  const y = heap.alloc([s.n, s.oh, s.ow, s.co]);
  const buffers = scratch(heap, parts.length, bt, s);
  const args = parts.map(([lo, hi], p) => [x, heap.at(u), heap.at(y), lo, hi, s.h, s.w, s.ci, s.oh, s.ow, s.co, th, tw, s.pt, s.pl, heap.at(zeros), heap.at(sink), ...buffers[p], bt]);
  runParts(heap.simd, 'wino_fwd', args);
  return y;
}

/**
 * u[xi][p][q] = sum over taps of COEF[xi][tap] * tap(tap)[p][q], where tap(k) is the filter's
 * [P][Q] slice for tap k: the filter transform, for the forward and (turned) for dx.
 */
function transformFilter(u: Float32Array, taps: Float32Array[], pq: number): void {
  for (let xi = 0; xi < 16; xi++) {
    const dst = u.subarray(xi * pq, (xi + 1) * pq);
    dst.fill(0);
    COEF[xi].forEach((c, tap) => {
      if (c === 0) return;
      const src = taps[tap];
      for (let e = 0; e < pq; e++) dst[e] += c * src[e];
    });
  }
}

/** Conv2D of x by filter ([3, 3, ci, co]), both tensors in the wasm heap. */
export function winogradConv2D(simd: Simd, b: WasmBackendInternals, x: TensorInfo, filter: TensorInfo, s: WinogradShape): TensorInfo {
  const heap = new Heap(simd, b);
  try {
    const pq = s.ci * s.co;
    const u = heap.alloc([16, s.ci, s.co]);
    const g = heap.f32(filter);
    transformFilter(heap.f32(u), Array.from({ length: 9 }, (_, tap) => g.subarray(tap * pq, (tap + 1) * pq)), pq);
    return heap.keep(forwardTiles(heap, heap.at(x), u, s));
  } finally {
    heap.dispose();
  }
}

/** Conv2DBackpropInput: dx ([n, h, w, ci]) from dy ([n, oh, ow, co]) and filter ([3, 3, ci, co]). */
export function winogradInputGrad(simd: Simd, b: WasmBackendInternals, dy: TensorInfo, filter: TensorInfo, s: WinogradShape): TensorInfo {
  const heap = new Heap(simd, b);
  try {
    const pq = s.ci * s.co;
    const u = heap.alloc([16, s.co, s.ci]);
    const g = heap.f32(filter);
    // tap k of the turned filter is tap 8 - k of g with its [ci][co] slice transposed
    const taps = Array.from({ length: 9 }, (_, tap) => {
      const src = g.subarray((8 - tap) * pq, (9 - tap) * pq);
      const out = new Float32Array(pq);
      for (let p = 0; p < s.ci; p++) for (let q = 0; q < s.co; q++) out[q * s.ci + p] = src[p * s.co + q];
      return out;
    });
    transformFilter(heap.f32(u), taps, pq);
    const turned: WinogradShape = { n: s.n, h: s.oh, w: s.ow, ci: s.co, oh: s.h, ow: s.w, co: s.ci, pt: 2 - s.pt, pl: 2 - s.pl };
    return heap.keep(forwardTiles(heap, heap.at(dy), u, turned));
  } finally {
    heap.dispose();
  }
}

/** Conv2DBackpropFilter: dW ([3, 3, ci, co]) from x ([n, h, w, ci]) and dy ([n, oh, ow, co]). */
export function winogradFilterGrad(simd: Simd, b: WasmBackendInternals, x: TensorInfo, dy: TensorInfo, s: WinogradShape): TensorInfo {
  const heap = new Heap(simd, b);
  try {
    const { th, tw } = tilesOf(s);
    const bt = blockTiles(s.ci, s.co);
    const chunks = Math.ceil(s.n / DW_CHUNK);
    const parts = splitRange(chunks, threadsOf(simd));
    const du = heap.alloc([chunks, 16, s.ci, s.co]);
    const zeros = heap.alloc([Math.max(s.ci, s.co)], true);
    const buffers = scratch(heap, parts.length, bt, s);
    const args = parts.map(([lo, hi], p) => [heap.at(x), heap.at(dy), heap.at(du), lo, hi, DW_CHUNK, s.n, s.h, s.w, s.ci, s.oh, s.ow, s.co, th, tw, s.pt, s.pl, heap.at(zeros), ...buffers[p], bt]);
    runParts(simd, 'wino_dw', args);
    const dw = heap.alloc([3, 3, s.ci, s.co], true);
    filterFromTiles(heap.f32(du), chunks, heap.f32(dw), s.ci * s.co);
    return heap.keep(dw);
  } finally {
    heap.dispose();
  }
}

/** dw[tap] = sum over xi of COEF[xi][tap] * (sum over chunks, in order, of du[chunk][xi]). */
function filterFromTiles(du: Float32Array, chunks: number, dw: Float32Array, pq: number): void {
  const sum = du.subarray(0, 16 * pq);
  for (let c = 1; c < chunks; c++) {
    const part = du.subarray(c * 16 * pq, (c + 1) * 16 * pq);
    for (let e = 0; e < 16 * pq; e++) sum[e] += part[e];
  }
  for (let tap = 0; tap < 9; tap++) {
    const dst = dw.subarray(tap * pq, (tap + 1) * pq);
    for (let xi = 0; xi < 16; xi++) {
      const c = COEF[xi][tap];
      if (c === 0) continue;
      const src = sum.subarray(xi * pq, (xi + 1) * pq);
      for (let e = 0; e < pq; e++) dst[e] += c * src[e];
    }
  }
}
