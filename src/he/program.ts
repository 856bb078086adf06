import { type InputEncoding, encodeInput } from './input-encoding.js';
import type { Conv2dGeometry } from './tensor-ops.js';

/**
 * The compiled HE program: what the server evaluates, independent of packing. Tensors are
 * whole per-sample tensors; each packing decides how their elements sit in ciphertext slots.
 *
 * Three step kinds:
 * - `linear`: out = sum over terms of op(src) + bias. Costs one level: every term is a
 *   plaintext product (scalar weights in batch packing, diagonals in sample packing), the sum
 *   is rescaled once.
 * - `power`: out = a * b (a square when a === b), ciphertext-ciphertext, relinearized and
 *   rescaled: one level.
 * - `dot`: out[o] = sum of +-a[i] * b[j] over the pairs of o, plus plaintext terms and a bias:
 *   ciphertext-ciphertext products summed before one relinearization and one rescale (the
 *   plaintext terms land on the products' scale), one level. Attention's scores and value
 *   products, the normalization by 1/D and the Newton steps of the reciprocal and inverse
 *   square root are dot steps. Batch packing only (the pairs read arbitrary elements).
 * - `struct`: additions and relabelings only (sum pooling, zero padding, flatten, gather),
 *   plus an optional constant: no level.
 */

export type StructOp =
  | { kind: 'sumpool'; size: number; stride: number }
  | { kind: 'globalsum' }
  | { kind: 'pad'; top: number; bottom: number; left: number; right: number }
  | { kind: 'flatten' }
  /** out[i] = in[index[i]] into a tensor of `shape` (patches, a token row): a relabeling */
  | { kind: 'gather'; shape: number[]; index: Int32Array }
  /**
   * out[i] = in[index[i]] with its slots rotated by steps[i] (slot j reads slot j + steps[i],
   * cyclic; 0 copies): a token-folded program's view of other tokens (token packing,
   * src/he/packing/token-fold.ts). Rotations cost no level.
   */
  | { kind: 'rotate'; shape: number[]; index: Int32Array; steps: Int32Array };

export type WeightedOp =
  /** y = x * kernel, kernel [inSize, units] row-major */
  | { kind: 'dense'; inSize: number; units: number; kernel: Float64Array }
  /** kernel HWIO flat */
  | { kind: 'conv'; geom: Conv2dGeometry; kernel: Float64Array }
  /** element-wise factors over the whole tensor (a diagonal; d = 0 in sample packing) */
  | { kind: 'scale'; factors: Float64Array }
  /** the same dense layer on each of `tokens` rows: [tokens, inSize] -> [tokens, units], kernel [inSize, units] */
  | { kind: 'tokens'; tokens: number; inSize: number; units: number; kernel: Float64Array };

/**
 * The products of a dot step: entry k adds sign[k] * a[a[k]] * b[b[k]] to out[out[k]]
 * (sign null: all +1; a sign is a free negation, a general factor would cost a level).
 */
export interface DotPairs {
  out: Int32Array;
  a: Int32Array;
  b: Int32Array;
  sign: Int8Array | null;
}

export interface LinearTerm {
  src: number;
  op: WeightedOp;
}

/**
 * A token-folded program's biases that differ between tokens: entry o * tokens + t is output
 * o's constant in the blocks of slots that hold token t (`HeProgram.tokenBlocks`). Replaces `bias`.
 */
export interface TokenBias {
  tokenBias?: Float64Array;
}

export type Step =
  | ({ kind: 'linear'; out: number; terms: LinearTerm[]; bias: Float64Array | null; nodes: string[] } & TokenBias)
  | { kind: 'power'; out: number; a: number; b: number; nodes: string[] }
  | ({ kind: 'dot'; out: number; a: number; b: number; pairs: DotPairs; terms: LinearTerm[]; bias: Float64Array | null; nodes: string[] } & TokenBias)
  | ({ kind: 'struct'; out: number; src: number; op: StructOp; bias: Float64Array | null; nodes: string[] } & TokenBias);

export interface TensorInfo {
  id: number;
  shape: number[];
  /** levels consumed between the encrypted input and this tensor */
  depth: number;
  /** human label: which graph value this tensor holds (for --trace) */
  label: string;
}

export interface LayerBudget {
  node: string;
  op: string;
  /** levels this layer's own steps consume (0: folded into a neighbour or additions only) */
  levels: number;
  /** how the layer is realized, e.g. "folded into conv2", "square (1 level)" */
  how: string;
}

export interface HeProgram {
  inputShape: number[];
  classes: number;
  tensors: TensorInfo[];
  steps: Step[];
  input: number;
  output: number;
  depth: number;
  layers: LayerBudget[];
  /**
   * `--refresh client` only: points where the chain ran out of levels. Before step `before`,
   * each `src` goes back to the client, which decrypts it and encrypts the same slots again as
   * `out` (depth 0); later steps read `out`. Absent or empty: the program is one segment.
   */
  refreshes?: RefreshPoint[];
  /**
   * Interleaved packing: one pass evaluates this many samples at once, interleaved innermost
   * (element e of sample s at e*interleave + s of every tensor's values). Shapes, kernels and
   * depths stay one sample's: each kernel entry serves all of them. Absent: 1.
   */
  interleave?: number;
  /**
   * How the client turns a sample into the input tensor before encrypting it. Absent: as
   * stored. `one-hot`: token ids [T] become rows of 0/1 [T, vocab] (an embedding is then a
   * plaintext product).
   */
  inputEncoding?: InputEncoding;
  /**
   * Token packing: the slots are `blocks` blocks, block b holding token b mod `tokens` of every
   * sample (src/he/packing/token-fold.ts); a step's `tokenBias` fills the blocks.
   */
  tokenBlocks?: { tokens: number; blocks: number };
}

/** The vector the client encrypts for one sample (the program's input tensor). */
export function encodeSample(p: HeProgram, x: ArrayLike<number>): Float64Array {
  return encodeInput(p.inputEncoding, x);
}

/** `n` samples as the program's input tensors (token ids become one-hot rows): what calibration and the client see. */
export function encodeSamples(p: HeProgram, x: Float32Array, n: number): Float32Array {
  if (!p.inputEncoding) return x;
  const per = x.length / n;
  const perIn = p.inputShape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n * perIn);
  for (let s = 0; s < n; s++) out.set(encodeSample(p, x.subarray(s * per, (s + 1) * per)), s * perIn);
  return out;
}

export interface RefreshPoint {
  before: number;
  /** each tensor the client refreshes (`src`) and the fresh copy the rest reads (`out`) */
  tensors: { src: number; out: number }[];
  /** tensors the rest reads that are already at the top level: they cross on the server, no round trip */
  carried?: number[];
}

/** Which steps read each tensor (to free ciphertexts after their last use). */
export function lastUses(p: HeProgram): Map<number, number> {
  const last = new Map<number, number>();
  p.steps.forEach((s, i) => {
    for (const src of stepSources(s)) last.set(src, i);
  });
  last.set(p.output, p.steps.length);
  return last;
}

export function stepSources(s: Step): number[] {
  if (s.kind === 'linear') return s.terms.map((t) => t.src);
  if (s.kind === 'power') return [s.a, s.b];
  if (s.kind === 'dot') return [s.a, s.b, ...s.terms.map((t) => t.src)];
  return [s.src];
}

export function structOutShape(op: StructOp, inShape: number[]): number[] {
  switch (op.kind) {
    case 'sumpool':
      return [Math.floor((inShape[0] - op.size) / op.stride) + 1, Math.floor((inShape[1] - op.size) / op.stride) + 1, inShape[2]];
    case 'globalsum':
      return [inShape[inShape.length - 1]];
    case 'pad':
      return [inShape[0] + op.top + op.bottom, inShape[1] + op.left + op.right, inShape[2]];
    case 'flatten':
      return [inShape.reduce((a, b) => a * b, 1)];
    case 'gather':
    case 'rotate':
      return op.shape;
  }
}

export function weightedOutShape(op: WeightedOp, inShape: number[]): number[] {
  switch (op.kind) {
    case 'dense':
      return [op.units];
    case 'conv':
      return [op.geom.outH, op.geom.outW, op.geom.cout];
    case 'scale':
      return inShape;
    case 'tokens':
      return [op.tokens, op.units];
  }
}

/** Serializable form (for worker threads): typed arrays survive structured clone as is. */
export type ProgramMessage = HeProgram;
