import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { dense } from '../he/tensor-ops.js';
import { layerNorm, layerNormTf } from '../layers/norm.js';
import { denominatorRangePenalty, powerSoftmax, powerSoftmaxTf } from '../layers/power-softmax.js';
import { invSqrtDepth, reciprocalIterationsFor } from '../layers/reciprocal.js';
import type { LayerSpec, SequenceLayerSpec } from '../models/graph.js';
import type { OpDefOf, PackingKind, ParamDef, Support } from './types.js';
import { glorot, needRank, noPacking, ones, zeros } from './shared.js';
import { RECIPROCAL_TOLERANCE, lastRowIndex, lowerAttention, lowerLayerNorm, patchIndex, tokenMean, tokens } from './sequence-he.js';

/**
 * Transformer ops on token sequences [T, F] (batches [N, T, F]). Their HE lowering onto the
 * shared program IR is in sequence-he.ts: products of arbitrary element pairs and gathers,
 * which batch packing (one ciphertext per element) runs without rotations.
 */

const SLOTS_ARE_SAMPLES = 'products of arbitrary element pairs (attention) need one ciphertext per element: batch packing';
const TRANSFORMER_PACKINGS: Record<PackingKind, Support> = {
  batch: true,
  sample: SLOTS_ARE_SAMPLES,
  stacked: SLOTS_ARE_SAMPLES,
  interleaved: SLOTS_ARE_SAMPLES,
  token: true,
};

type Seq<K extends SequenceLayerSpec['op']> = Extract<LayerSpec, { op: K }>;

const uniform = (shape: number[], limit: number): ParamDef => ({ shape, init: { kind: 'uniform', limit }, trainable: true });
const needTokens = (node: string, op: string, x: number[]) => needRank(node, op, x, 2, 'a token sequence [T, D]');

/** Faces every sequence op shares. */
const common = {
  family: 'sequence',
  kind: 'sequence' as const,
  foldsInto: null,
  prunable: { role: 'mixes' as const },
  rangeProbes: () => [] as string[],
  polynomial: () => true as const,
  packings: () => TRANSFORMER_PACKINGS,
};

export const patchifyOp: OpDefOf<'patchify'> = {
  ...common,
  name: 'patchify',
  examples: [{ layer: { op: 'patchify', size: 2 }, ins: [[4, 4, 2]] }],
  doc: '[H, W, C] -> [(H/s)(W/s), s*s*C]: non-overlapping patches, each flattened (h, w, c)',
  attributes: z.strictObject({ size: z.number().int().positive() }),
  describe: (L) => `${L.size}x${L.size}`,
  outputShape(L, [x], node) {
    needRank(node, 'patchify', x, 3, 'an image input [H, W, C]');
    if (x[0] % L.size !== 0 || x[1] % L.size !== 0) {
      throw new Error(`layer ${node} (patchify): patch ${L.size} does not tile the ${x[0]}x${x[1]} image (H and W must be multiples of it)`);
    }
    return [(x[0] / L.size) * (x[1] / L.size), L.size * L.size * x[2]];
  },
  params: () => ({}),
  tfjsForward({ layer: L, ins: [x] }) {
    const [n, h, wd, c] = x.shape;
    const s = L.size;
    // [N, H/s, s, W/s, s, C] -> [N, H/s, W/s, s, s, C] -> [N, T, s*s*C]
    const r = tf.reshape(x, [n, h / s, s, wd / s, s, c]);
    return tf.reshape(tf.transpose(r, [0, 1, 3, 2, 4, 5]), [n, (h / s) * (wd / s), s * s * c]);
  },
  referenceForward({ layer: L, ins: [x], inShapes: [[H, W, C]] }) {
    const s = L.size;
    const out = new Float64Array(x.length);
    let o = 0;
    for (let ph = 0; ph < H / s; ph++)
      for (let pw = 0; pw < W / s; pw++)
        for (let dy = 0; dy < s; dy++) for (let dx = 0; dx < s; dx++) for (let c = 0; c < C; c++) out[o++] = x[((ph * s + dy) * W + pw * s + dx) * C + c];
    return out;
  },
  lowerHE: ({ layer: L, ins: [x], inShapes: [shape], he }) => {
    const out = [(shape[0] / L.size) * (shape[1] / L.size), L.size * L.size * shape[2]];
    return he.struct(x, { kind: 'gather', shape: out, index: patchIndex(shape, L.size) });
  },
  levelCost: () => 0,
};

export const embeddingOp: OpDefOf<'embedding'> = {
  ...common,
  // owns the plaintext products it is lowered to (the level budget charges them here)
  kind: 'linear',
  name: 'embedding',
  examples: [{ layer: { op: 'embedding', vocab: 5, dim: 4 }, ins: [[3]] }],
  doc: '[T] character ids -> [T, dim]: one-hot times a table (under HE: a dense layer on one-hot inputs)',
  attributes: z.strictObject({ vocab: z.number().int().positive(), dim: z.number().int().positive() }),
  describe: (L) => `${L.vocab}x${L.dim}`,
  outputShape(L, [x], node) {
    needRank(node, 'embedding', x, 1, 'a sequence of token ids [T]');
    return [x[0], L.dim];
  },
  params: (L) => ({ table: uniform([L.vocab, L.dim], Math.sqrt(3) * 0.5) }),
  tfjsForward({ layer: L, ins: [x], w }) {
    const [n, t] = x.shape;
    // one-hot times the table: a matrix product, differentiable on every backend (and what
    // the HE evaluator computes on a one-hot encrypted input)
    const ids = tf.reshape(tf.cast(x, 'int32'), [n * t]) as tf.Tensor1D;
    return tf.reshape(tf.matMul(tf.oneHot(ids, L.vocab), w('table') as tf.Tensor2D), [n, t, L.dim]);
  },
  referenceForward({ layer: L, ins: [x], w }) {
    const table = w('table');
    const out = new Float64Array(x.length * L.dim);
    x.forEach((id, t) => {
      for (let j = 0; j < L.dim; j++) out[t * L.dim + j] = table[id * L.dim + j];
    });
    return out;
  },
  lowerHE: ({ layer: L, ins: [x], inShapes: [[T]], w, he }) => he.weighted(he.oneHotInput(x, L.vocab), tokens(T, L.vocab, L.dim, w('table')), null),
  levelCost: () => 1,
};

export const posEmbeddingOp: OpDefOf<'pos_embedding'> = {
  ...common,
  name: 'pos_embedding',
  examples: [{ layer: { op: 'pos_embedding' }, ins: [[3, 4]] }],
  doc: '[T, D] + learned positions (table [T, D])',
  attributes: z.strictObject({}),
  describe: () => '',
  outputShape(_L, [x], node) {
    needTokens(node, 'pos_embedding', x);
    return x;
  },
  params: (_L, x) => ({ table: uniform([x[0], x[1]], Math.sqrt(3) * 0.1) }),
  tfjsForward: ({ ins: [x], w }) => tf.add(x, w('table')),
  referenceForward: ({ ins: [x], w }) => {
    const table = w('table');
    return x.map((v, i) => v + table[i]);
  },
  lowerHE: ({ ins: [x], w, he }) => {
    const table = w('table');
    return he.affine(x, new Float64Array(table.length).fill(1), table);
  },
  levelCost: () => 0,
};

export const tokenDenseOp: OpDefOf<'token_dense'> = {
  ...common,
  // owns the plaintext products it is lowered to (the level budget charges them here)
  kind: 'linear',
  name: 'token_dense',
  examples: [{ layer: { op: 'token_dense', units: 5, bias: true }, ins: [[3, 4]] }],
  doc: 'the same dense layer on every token: [T, F] -> [T, units]',
  attributes: z.strictObject({ units: z.number().int().positive(), bias: z.boolean() }),
  describe: (L) => `${L.units} units`,
  outputShape(L, [x], node) {
    needRank(node, 'token_dense', x, 2, 'a token sequence [T, F]');
    return [x[0], L.units];
  },
  params: (L, x) => ({ kernel: glorot([x[1], L.units], x[1], L.units), ...(L.bias ? { bias: zeros([L.units]) } : {}) }),
  tfjsForward: ({ layer: L, ins: [x], w }) => tokenDense(x, w('kernel'), L.bias ? w('bias') : null),
  referenceForward({ layer: L, ins: [x], inShapes: [[T, F]], w }) {
    const out = new Float64Array(T * L.units);
    for (let t = 0; t < T; t++) out.set(dense(x.subarray(t * F, (t + 1) * F), w('kernel'), L.units, L.bias ? w('bias') : undefined), t * L.units);
    return out;
  },
  lowerHE: ({ layer: L, ins: [x], inShapes: [[T, F]], w, he }) => he.weighted(x, tokens(T, F, L.units, w('kernel')), L.bias ? w('bias') : null),
  levelCost: () => 1,
};

export const attentionOp: OpDefOf<'attention'> = {
  ...common,
  name: 'attention',
  examples: [
    { layer: { op: 'attention', heads: 2, attention: { kind: 'power-softmax', p: 2, eps: 1e-3 } }, ins: [[3, 4]] },
    { layer: { op: 'attention', heads: 2, attention: { kind: 'softmax' } }, ins: [[3, 4]] },
  ],
  doc: 'multi-head self-attention with its projections; power-softmax (polynomial) or softmax',
  attributes: z.strictObject({
    heads: z.number().int().positive(),
    attention: z.discriminatedUnion('kind', [
      z.strictObject({
        kind: z.literal('power-softmax'),
        p: z.number().int().min(2),
        eps: z.number().min(0),
        denominator: z.strictObject({ range: z.tuple([z.number().positive(), z.number().positive()]), weight: z.number().min(0) }).optional(),
      }),
      z.strictObject({ kind: z.literal('softmax') }),
    ]),
  }),
  describe: (L) => `${L.heads} heads ${L.attention.kind}${L.attention.kind === 'power-softmax' ? ` p${L.attention.p}` : ''}`,
  outputShape(L, [x], node) {
    needTokens(node, 'attention', x);
    if (x[1] % L.heads !== 0) throw new Error(`layer ${node} (attention): width ${x[1]} is not divisible by ${L.heads} heads`);
    return x;
  },
  params(_L, x) {
    const D = x[1];
    const projection = (shape: number[]) => uniform(shape, Math.sqrt(6 / (2 * shape[0])));
    return { qkv_kernel: projection([D, 3 * D]), qkv_bias: zeros([3 * D]), out_kernel: projection([D, D]), out_bias: zeros([D]) };
  },
  tfjsForward: ({ layer: L, ins: [x], w, probe }) => attentionTf(x, L, w, probe),
  referenceForward: ({ layer: L, ins: [x], inShapes: [[T, D]], w }) => attentionReference(x, T, D, L, w),
  lowerHE: ({ layer: L, node, ins: [x], inShapes: [shape], w, he, ranges }) => lowerAttention(L, node, x, shape, w, he, ranges),
  levelCost: (L, ctx) => sequenceOpDepth(L, ctx.ranges?.activations[`${ctx.node}/denominator`] ?? null)?.levels ?? (attentionOp.polynomial(L) === true ? null : Infinity),
  polynomial: (L) => (L.attention.kind === 'power-softmax' ? true : 'attention softmax'),
  rangeProbes: (L) => (L.attention.kind === 'power-softmax' ? ['denominator'] : []),
  trainingPenalty(L) {
    const want = L.attention.kind === 'power-softmax' ? L.attention.denominator : undefined;
    if (!want || want.weight <= 0) return null;
    return (probed) => tf.mul(denominatorRangePenalty(probed('denominator'), want.range), want.weight) as tf.Scalar;
  },
  packings: (L) => (L.attention.kind === 'power-softmax' ? TRANSFORMER_PACKINGS : noPacking('softmax is not a polynomial: use power-softmax')),
};

export const layernormOp: OpDefOf<'layernorm'> = {
  ...common,
  name: 'layernorm',
  examples: [
    { layer: { op: 'layernorm', epsilon: 0, poly: { range: [0.1, 10], iterations: 5 } }, ins: [[3, 4]] },
    { layer: { op: 'layernorm', epsilon: 1e-5, poly: null }, ins: [[3, 4]] },
  ],
  doc: 'normalization of each token over its features; poly: Newton inverse square root fitted to a variance range',
  attributes: z.strictObject({
    epsilon: z.number().min(0),
    poly: z.strictObject({ range: z.tuple([z.number(), z.number()]), iterations: z.number().int().min(0) }).nullable(),
  }),
  describe: (L) => (L.poly ? `poly ${L.poly.iterations} Newton steps` : 'exact'),
  outputShape(_L, [x], node) {
    needTokens(node, 'layernorm', x);
    return x;
  },
  params: (_L, x) => ({ gamma: ones([x[1]]), beta: zeros([x[1]]) }),
  tfjsForward({ layer: L, ins: [x], w, probe }) {
    const { y, variance } = layerNormTf(x, w('gamma'), w('beta'), L.epsilon, L.poly);
    probe('variance', variance);
    return y;
  },
  referenceForward({ layer: L, ins: [x], inShapes: [[T, D]], w }) {
    const out = new Float64Array(T * D);
    for (let t = 0; t < T; t++) out.set(layerNorm(x.subarray(t * D, (t + 1) * D), w('gamma'), w('beta'), L.epsilon, L.poly).y, t * D);
    return out;
  },
  lowerHE: ({ layer: L, node, ins: [x], inShapes: [shape], w, he }) => lowerLayerNorm(L, node, x, shape, w, he),
  levelCost: (L) => sequenceOpDepth(L)?.levels ?? Infinity,
  polynomial: (L) => (L.poly ? true : 'layernorm (exact inverse square root)'),
  rangeProbes: () => ['variance'],
  packings: (L) => (L.poly ? TRANSFORMER_PACKINGS : noPacking('the exact inverse square root is not a polynomial: use poly-layernorm')),
};

export const seqPoolOp: OpDefOf<'seq_pool'> = {
  ...common,
  name: 'seq_pool',
  examples: [
    { layer: { op: 'seq_pool', mode: 'mean' }, ins: [[3, 4]] },
    { layer: { op: 'seq_pool', mode: 'last' }, ins: [[3, 4]] },
  ],
  doc: '[T, D] -> [D]: the mean over tokens, or the last token (language models)',
  attributes: z.strictObject({ mode: z.enum(['mean', 'last']) }),
  describe: (L) => L.mode,
  outputShape(_L, [x], node) {
    needTokens(node, 'seq_pool', x);
    return [x[1]];
  },
  params: () => ({}),
  tfjsForward({ layer: L, ins: [x] }) {
    if (L.mode === 'mean') return tf.mean(x, 1);
    const [n, t, d] = x.shape;
    return tf.reshape(tf.slice(x, [0, t - 1, 0], [n, 1, d]), [n, d]);
  },
  referenceForward({ layer: L, ins: [x], inShapes: [[T, D]] }) {
    if (L.mode === 'last') return x.slice((T - 1) * D, T * D);
    const out = new Float64Array(D);
    for (let i = 0; i < x.length; i++) out[i % D] += x[i] / T;
    return out;
  },
  lowerHE: ({ layer: L, ins: [x], inShapes: [[T, D]], he }) =>
    L.mode === 'last' ? he.struct(x, { kind: 'gather', shape: [D], index: lastRowIndex(T, D) }) : he.weighted(x, tokenMean(T, D), null),
  levelCost: (L) => (L.mode === 'mean' ? 1 : 0),
};

function tokenDense(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | null): tf.Tensor {
  const [n, t, f] = x.shape;
  let y = tf.matMul(tf.reshape(x, [n * t, f]) as tf.Tensor2D, kernel as tf.Tensor2D);
  if (bias) y = tf.add(y, bias);
  return tf.reshape(y, [n, t, kernel.shape[1]!]);
}

function attentionTf(x: tf.Tensor, L: Seq<'attention'>, w: (param: string) => tf.Tensor, probe: (what: string, t: tf.Tensor) => void): tf.Tensor {
  const [n, t, d] = x.shape;
  const h = L.heads;
  const dh = d / h;
  const qkv = tf.add(tf.matMul(tf.reshape(x, [n * t, d]) as tf.Tensor2D, w('qkv_kernel') as tf.Tensor2D), w('qkv_bias'));
  const [q, k, v] = tf.split(qkv, 3, 1).map((m) => tf.transpose(tf.reshape(m, [n, t, h, dh]), [0, 2, 1, 3]));
  // [N, H, T, T]; the 1/sqrt(dh) scale goes on q (fewer multiplications)
  const scores = tf.matMul(tf.mul(q, 1 / Math.sqrt(dh)), k, false, true);
  let weights: tf.Tensor;
  if (L.attention.kind === 'softmax') weights = tf.softmax(scores);
  else {
    const ps = powerSoftmaxTf(scores, L.attention.p, L.attention.eps);
    probe('denominator', ps.denominator);
    weights = ps.y;
  }
  const ctx = tf.reshape(tf.transpose(tf.matMul(weights, v), [0, 2, 1, 3]), [n * t, d]);
  const out = tf.add(tf.matMul(ctx as tf.Tensor2D, w('out_kernel') as tf.Tensor2D), w('out_bias'));
  return tf.reshape(out, [n, t, d]);
}

/** The same attention on plain numbers, one sample [T, D]. */
function attentionReference(x: Float64Array, T: number, D: number, L: Seq<'attention'>, w: (p: string) => ArrayLike<number>): Float64Array {
  const dh = D / L.heads;
  const qkv = Array.from({ length: T }, (_, t) => dense(x.subarray(t * D, (t + 1) * D), w('qkv_kernel'), 3 * D, w('qkv_bias')));
  const ctx = new Float64Array(T * D);
  for (let h = 0; h < L.heads; h++) {
    for (let i = 0; i < T; i++) {
      const scores = Float64Array.from({ length: T }, (_, j) => {
        let s = 0;
        for (let e = h * dh; e < (h + 1) * dh; e++) s += qkv[i][e] * qkv[j][D + e];
        return s / Math.sqrt(dh);
      });
      const a = L.attention;
      const weights = a.kind === 'power-softmax' ? powerSoftmax(scores, a.p, a.eps).y : softmax(scores);
      for (let e = h * dh; e < (h + 1) * dh; e++) for (let j = 0; j < T; j++) ctx[i * D + e] += weights[j] * qkv[j][2 * D + e];
    }
  }
  const out = new Float64Array(T * D);
  for (let t = 0; t < T; t++) out.set(dense(ctx.subarray(t * D, (t + 1) * D), w('out_kernel'), D, w('out_bias')), t * D);
  return out;
}

function softmax(s: Float64Array): Float64Array {
  const m = Math.max(...s);
  const e = s.map((v) => Math.exp(v - m));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

export { RECIPROCAL_TOLERANCE };

export interface SequenceDepth {
  /** CKKS levels on the longest path through the op */
  levels: number;
  /** levels per component, for the report */
  parts: Record<string, number>;
}

/**
 * CKKS levels of a sequence op (one per ciphertext-ciphertext or plaintext product on the
 * critical path; additions, rotations and relabelings are free). `denominator` is the observed
 * range of power-softmax's denominator (ranges.json `<node>/denominator`); without it the
 * reciprocal's iterations are unknown and the levels are null.
 *   attention: qkv projection 1, q k^T 1, power log2(p), division 2 + k (d = D y0, k Goldschmidt
 *   steps on the rows, k from the range, then the product with s^p v), output projection 1;
 *   poly-layernorm: square 1, inverse square root 1 + 2k, (x - mu) x r 1 (gamma folds).
 */
export function sequenceOpDepth(L: SequenceLayerSpec, denominator?: { min: number; max: number } | null): SequenceDepth | null {
  if (L.op === 'layernorm') {
    if (!L.poly) return null;
    const r = invSqrtDepth(L.poly.iterations);
    return { levels: 2 + r, parts: { variance: 1, inverse_sqrt: r, scale: 1 } };
  }
  if (L.op === 'attention') {
    if (L.attention.kind !== 'power-softmax' || !denominator) return null;
    const power = Math.ceil(Math.log2(L.attention.p));
    const lo = Math.max(denominator.min, L.attention.eps, 1e-6);
    const k = reciprocalIterationsFor(lo, Math.max(lo, denominator.max), RECIPROCAL_TOLERANCE);
    // Goldschmidt division (lowerDivision): d = den y0, k steps of one level, then num y_k
    const division = 2 + k;
    const parts = { qkv: 1, scores: 1, power, division, output: 1 };
    return { levels: 1 + 1 + power + division + 1, parts };
  }
  const levels = L.op === 'embedding' || L.op === 'token_dense' ? 1 : 0;
  return { levels, parts: levels ? { linear: levels } : {} };
}
