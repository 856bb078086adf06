import type { WeightedOp } from '../he/program.js';
import { fitInvSqrt, fitReciprocal, reciprocalIterationsFor, type NewtonApprox } from '../layers/reciprocal.js';
import type { LayerSpec } from '../models/graph.js';
import { HepolyError } from '../util/errors.js';
import type { HeValue, LevelContext, LowerOps, ProductPairs } from './types.js';

/**
 * The HE lowering of the transformer ops (src/ops/sequence.ts) onto the shared program IR:
 * per-token dense layers are `tokens` kernels (they fold and compose like any linear layer),
 * patches and the last token are gathers (relabelings), and attention, power-softmax's
 * reciprocal and poly-layernorm's inverse square root are `product` steps (ciphertext
 * products summed before one rescale):
 *
 *   q, k, v  = x Wqkv + b                   1 level (1/sqrt(dh) and sigma^(1/p) folded into q's columns)
 *   s[t][u]  = sum_c q[t][c] k[u][c]        1 level
 *   e        = s^p                          log2 p levels (the compiler's power tree)
 *   D        = sigma eps + sum_u e          (sigma D: values up to ~45, see normalizedDivision; folds into y0)
 *   n        = sum_u e[t][u] v[u][c]        1 level (the value product, beside the sum)
 *   d        = D y0                         1 level
 *   y, d     = y (2 - d), d (2 - d), k times      1 level each (Goldschmidt on the rows; k fitted to the recorded range of D)
 *   q        = n y                          1 level
 *   o[t][c]  = q[t][c]                      relabeling (heads back side by side)
 *   out      = o Wout + b                   1 level
 */

type Seq<K extends LayerSpec['op']> = Extract<LayerSpec, { op: K }>;

/** Relative accuracy the HE reciprocal of power-softmax is sized for. */
export const RECIPROCAL_TOLERANCE = 1e-3;
/** The recorded denominator range is widened to [min / margin, max * margin]. */
export const DENOMINATOR_MARGIN = 1.5;

export interface ReciprocalChoice {
  node: string;
  /** the range the Newton start was fitted to: the observed denominator range widened by the margin */
  lo: number;
  hi: number;
  iterations: number;
  /** relative error bound of 1/D on [lo, hi] */
  errorBound: number;
  levels: number;
}

/** Newton reciprocal for a power-softmax node, from the range recorded in training. */
export function chooseReciprocal(node: string, ranges: LevelContext['ranges'], eps: number): { approx: NewtonApprox; choice: ReciprocalChoice } {
  const r = ranges?.activations[`${node}/denominator`];
  if (!r) {
    throw new HepolyError(`${node}: no observed range for the power-softmax denominator (ranges.json "${node}/denominator"): retrain the checkpoint with this version, the range is recorded after the last epoch`);
  }
  const lo = Math.max(eps, r.min / DENOMINATOR_MARGIN, 1e-9);
  const hi = Math.max(lo * 1.0001, r.max * DENOMINATOR_MARGIN);
  const iterations = reciprocalIterationsFor(lo, hi, RECIPROCAL_TOLERANCE);
  const approx = fitReciprocal(lo, hi, iterations);
  return { approx, choice: { node, lo, hi, iterations, errorBound: approx.errorBound, levels: 1 + iterations } };
}

/**
 * How far above O(1) the normalized denominator may reach (normalizedDivision): the start's
 * slope is 1 / HEADROOM^2 and the largest denominator ~2.8 HEADROOM.
 */
export const DIVISION_HEADROOM = 16;

/**
 * The division num / den unchanged when both are multiplied by `scale`, chosen so the start
 * y0 = c0 - c1 den has c1 = 1 / DIVISION_HEADROOM^2. CKKS noise is absolute, so the scale
 * trades two failures. Fitted on the raw range (denominators up to 75,000 in vit-poly), c1 is
 * ~1e-9, below a 2^26 scale's resolution, and y0's noise times den pushes d = den y0 out of
 * (0, 2), where the iteration diverges. Normalized to O(1) (c1 = 1), the smallest
 * denominators (the range spans up to 1e6) drop to the noise and d can turn negative. A
 * headroom of 16 keeps c1 representable, the largest values near 45, and the smallest 16
 * times above full normalization. Iterations and error bound are scale-invariant.
 * Power-softmax applies the scale as scale^(1/p) in q's kernel.
 */
export function normalizedDivision(f: NewtonApprox, headroom = DIVISION_HEADROOM): { scale: number; approx: NewtonApprox } {
  const scale = Math.sqrt(f.c1) * headroom;
  return { scale, approx: fitReciprocal(f.lo * scale, f.hi * scale, f.iterations) };
}

/** Pairs from a list of [out, a, b] triples (sign +1, or -1 for every pair). */
function pairsOf(n: number, fill: (push: (o: number, a: number, b: number) => void) => void, negate = false): ProductPairs {
  const out = new Int32Array(n);
  const a = new Int32Array(n);
  const b = new Int32Array(n);
  let k = 0;
  fill((o, i, j) => {
    out[k] = o;
    a[k] = i;
    b[k] = j;
    k++;
  });
  if (k !== n) throw new Error(`internal: ${k} product pairs, expected ${n}`);
  return { out, a, b, sign: negate ? new Int8Array(n).fill(-1) : null };
}

/** out[i] = a[i] * b[i]. */
function elementwise(n: number, negate = false): ProductPairs {
  return pairsOf(n, (push) => {
    for (let i = 0; i < n; i++) push(i, i, i);
  }, negate);
}

/** out[r * W + i] = a[r * W + i] * b[r]: each row of `a` times its row's scalar. */
function rowScaled(rows: number, width: number): ProductPairs {
  return pairsOf(rows * width, (push) => {
    for (let r = 0; r < rows; r++) for (let i = 0; i < width; i++) push(r * width + i, r * width + i, r);
  });
}

const fill = (n: number, v: number) => new Float64Array(n).fill(v);

export function tokens(T: number, inSize: number, units: number, kernel: ArrayLike<number>): WeightedOp {
  return { kind: 'tokens', tokens: T, inSize, units, kernel: Float64Array.from(kernel) };
}

/** 1/den by Newton from the linear start: y <- y (2 - den y), two products per iteration. */
export function lowerReciprocal(he: LowerOps, den: HeValue, f: NewtonApprox): HeValue {
  const n = den.shape.reduce((a, b) => a * b, 1);
  let y = he.affine(den, fill(n, -f.c1), fill(n, f.c0));
  for (let k = 0; k < f.iterations; k++) {
    const z = he.product(den, y, elementwise(n, true), den.shape, { bias: fill(n, 2), role: 'reciprocal' });
    y = he.product(y, z, elementwise(n), den.shape, { role: 'reciprocal' });
  }
  return y;
}

/**
 * num[r][c] / den[r] by Goldschmidt on the rows, then one product with the numerator: with the
 * linear start y0, d = den y0, then k times y <- y (2 - d), d <- d (2 - d) (side by side, one
 * level per step: z = 2 - d folds into the products as 2y - y d and 2d - d d), and at the end
 * num y. y_k is Newton's iterate (the same error bound), in 1 + k levels after den instead of
 * Newton's 2k. Only the rows (heads x tokens) are iterated: updating the numerators beside d
 * (n <- n (2 - d)) would save the last level but multiplies rows x width ciphertexts every
 * step, each product relinearized on its own (one pair per output): iterating the rows only
 * took vit-poly's division under SEAL from 35.8 to 8.5 s a pass at N=4096 (docs/results.md).
 */
export function lowerDivision(he: LowerOps, num: HeValue, den: HeValue, width: number, f: NewtonApprox): HeValue {
  const rows = den.shape.reduce((a, b) => a * b, 1);
  let y = he.affine(den, fill(rows, -f.c1), fill(rows, f.c0));
  let d = he.product(den, y, elementwise(rows), den.shape, { role: 'division' });
  for (let k = 0; k < f.iterations; k++) {
    const next = he.product(y, d, elementwise(rows, true), den.shape, { plus: { x: y, factors: fill(rows, 2) }, role: 'division' });
    // the last step needs no new d
    if (k < f.iterations - 1) d = he.product(d, d, elementwise(rows, true), den.shape, { plus: { x: d, factors: fill(rows, 2) }, role: 'division' });
    y = next;
  }
  return he.product(num, y, rowScaled(rows, width), num.shape, { role: 'division' });
}

/** v^-1/2 by Newton: y <- 1.5 y + (-0.5 v y) y^2, where y^2 and (-0.5 v) y run side by side. */
export function lowerInvSqrt(he: LowerOps, v: HeValue, f: NewtonApprox): HeValue {
  const n = v.shape.reduce((a, b) => a * b, 1);
  let y = he.affine(v, fill(n, -f.c1), fill(n, f.c0));
  const halfV = he.affine(v, fill(n, -0.5), fill(n, 0));
  for (let k = 0; k < f.iterations; k++) {
    const y2 = he.product(y, y, elementwise(n), v.shape, { role: 'inverse sqrt' });
    const u = he.product(halfV, y, elementwise(n), v.shape, { role: 'inverse sqrt' });
    y = he.product(u, y2, elementwise(n), v.shape, { plus: { x: y, factors: fill(n, 1.5) }, role: 'inverse sqrt' });
  }
  return y;
}

/** Power-softmax attention with its projections, one sample [T, D] (see the top of the file). */
export function lowerAttention(L: Seq<'attention'>, node: string, x: HeValue, [T, D]: number[], w: (p: string) => Float64Array, he: LowerOps, ranges: LevelContext['ranges']): HeValue {
  if (L.attention.kind !== 'power-softmax') throw new Error(`unreachable: ${node} (softmax attention) is refused before compiling`);
  const H = L.heads;
  const dh = D / H;
  const division = normalizedDivision(chooseReciprocal(node, ranges, L.attention.eps).approx);
  // q's columns carry 1/sqrt(dh) and the p-th root of the denominator's normalization
  const scale = division.scale ** (1 / L.attention.p) / Math.sqrt(dh);
  const kq = w('qkv_kernel').map((v, i) => ((i % (3 * D)) < D ? v * scale : v));
  const bq = w('qkv_bias').map((v, j) => (j < D ? v * scale : v));
  const qkv = he.weighted(x, tokens(T, D, 3 * D, kq), bq);
  const at = (t: number, col: number) => t * 3 * D + col;
  const scores = he.product(qkv, qkv, pairsOf(H * T * T * dh, (push) => {
    for (let h = 0; h < H; h++) for (let t = 0; t < T; t++) for (let u = 0; u < T; u++) for (let c = 0; c < dh; c++) push((h * T + t) * T + u, at(t, h * dh + c), at(u, D + h * dh + c));
  }), [H * T, T], { role: 'scores' });
  const coeffs = new Float64Array(L.attention.p + 1);
  coeffs[L.attention.p] = 1;
  const e = he.polynomial(scores, coeffs);
  // the value product first: during the reciprocal's many levels only the numerators (T x D)
  // stay alive, not q, k, v and the powers (T x 3D + H x T x T), so a client refresh there sends fewer
  const num = he.product(e, qkv, pairsOf(H * T * dh * T, (push) => {
    for (let h = 0; h < H; h++) for (let t = 0; t < T; t++) for (let c = 0; c < dh; c++) for (let u = 0; u < T; u++) push((h * T + t) * dh + c, (h * T + t) * T + u, at(u, 2 * D + h * dh + c));
  }), [H * T, dh], { role: 'values' });
  const den = he.weighted(e, tokens(H * T, T, 1, fill(T, 1)), fill(1, division.scale * L.attention.eps));
  const quotient = lowerDivision(he, num, den, dh, division.approx);
  // heads back side by side: ctx[t][h dh + c] = quotient[h T + t][c] (a relabeling, no operation)
  const back = new Int32Array(T * D);
  for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) for (let c = 0; c < dh; c++) back[t * D + h * dh + c] = (h * T + t) * dh + c;
  const ctx = he.struct(quotient, { kind: 'gather', shape: [T, D], index: back });
  return he.weighted(ctx, tokens(T, D, D, w('out_kernel')), w('out_bias'));
}

/** Poly-layernorm on every token: (x - mean) times the Newton inverse square root of the variance. */
export function lowerLayerNorm(L: Seq<'layernorm'>, node: string, x: HeValue, [T, D]: number[], w: (p: string) => Float64Array, he: LowerOps): HeValue {
  if (!L.poly) throw new Error(`unreachable: ${node} (exact layernorm) is refused before compiling`);
  const centering = new Float64Array(D * D).map((_, k) => (Math.floor(k / D) === k % D ? 1 : 0) - 1 / D);
  const xc = he.weighted(x, tokens(T, D, D, centering), null);
  const sq = he.product(xc, xc, elementwise(T * D), [T, D], { role: 'variance' });
  const variance = he.weighted(sq, tokens(T, D, 1, fill(D, 1 / D)), fill(1, L.epsilon));
  const r = lowerInvSqrt(he, variance, fitInvSqrt(L.poly.range[0], L.poly.range[1], L.poly.iterations));
  const y = he.product(xc, r, rowScaled(T, D), [T, D], { role: 'normalize' });
  const g = w('gamma');
  const b = w('beta');
  return he.affine(y, Float64Array.from({ length: T * D }, (_, i) => g[i % D]), Float64Array.from({ length: T * D }, (_, i) => b[i % D]));
}

/** [H, W, C] -> [(H/s)(W/s), s*s*C] as the index each output element reads. */
export function patchIndex([H, W, C]: number[], s: number): Int32Array {
  const index = new Int32Array(H * W * C);
  let o = 0;
  for (let ph = 0; ph < H / s; ph++)
    for (let pw = 0; pw < W / s; pw++)
      for (let dy = 0; dy < s; dy++) for (let dx = 0; dx < s; dx++) for (let c = 0; c < C; c++) index[o++] = ((ph * s + dy) * W + pw * s + dx) * C + c;
  return index;
}

/** The mean over tokens, [T, D] -> [D], as a dense kernel. */
export function tokenMean(T: number, D: number): WeightedOp {
  const kernel = new Float64Array(T * D * D);
  for (let t = 0; t < T; t++) for (let d = 0; d < D; d++) kernel[(t * D + d) * D + d] = 1 / T;
  return { kind: 'dense', inSize: T * D, units: D, kernel };
}

/** The last token's row of [T, D]. */
export function lastRowIndex(T: number, D: number): Int32Array {
  return Int32Array.from({ length: D }, (_, d) => (T - 1) * D + d);
}
