import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { conv2d, convGeometry, expandGroupedKernel } from '../he/tensor-ops.js';
import type { LayerSpec, WeightMap } from '../models/graph.js';
import { weightKey } from '../models/weight-key.js';
import type { OpDefOf } from './types.js';
import { IMAGE_PACKINGS, glorot, needImage, ones, posInt, zeros } from './shared.js';

/** `{type: conv, ...}` in a cnn recipe. */
export const convRecipe = z.strictObject({
  type: z.literal('conv'),
  filters: posInt,
  kernel: posInt.default(3),
  stride: posInt.default(1),
  padding: z.enum(['same', 'valid']).default('same'),
  bias: z.boolean().default(true),
  /** grouped convolution: G divides the input channels and the filters; G = filters = channels is depthwise */
  groups: posInt.optional(),
});

type Conv = Extract<LayerSpec, { op: 'conv2d' }>;

/**
 * 2-D convolution, NHWC, kernel HWIO [k, k, cin/groups, filters], TF 'same'/'valid' padding.
 * `groups` G splits channels into G blocks (output block g reads input block g only):
 * G = cin = filters is a depthwise convolution (MobileNet, ConvNeXt). Under HE a grouped
 * kernel is the full kernel with zero blocks, and the geometry's `groups` says so: the
 * convolution taps (forEachConvTap: sample, stacked, interleaved) skip the blocks, and batch
 * packing skips zero weights, so no packing multiplies by them.
 */
export const conv2dOp: OpDefOf<'conv2d'> = {
  name: 'conv2d',
  family: 'conv2d',
  kind: 'linear',
  doc: 'convolution (NHWC, HWIO kernel, same/valid, stride; groups: grouped/depthwise; dirac: W + alpha I while training)',
  attributes: z.strictObject({
    filters: z.number().int().positive(),
    kernel: z.number().int().positive(),
    stride: z.number().int().positive(),
    padding: z.enum(['same', 'valid']),
    bias: z.boolean(),
    dirac: z.boolean().optional(),
    groups: z.number().int().positive().optional(),
  }),
  describe: (L) => `${L.filters}x${L.kernel}x${L.kernel} s${L.stride} ${L.padding}${groupsOf(L) > 1 ? ` g${groupsOf(L)}` : ''}`,
  outputShape(L, [x], node) {
    needImage(node, 'conv2d', x);
    checkGroups(L, x[2], node);
    const g = convGeometry(x, L.kernel, L.stride, L.padding, L.filters);
    if (g.outH < 1 || g.outW < 1) throw new Error(`layer ${node} (conv2d): kernel ${L.kernel} does not fit input [${x.join(', ')}]`);
    return [g.outH, g.outW, L.filters];
  },
  params(L, x) {
    const k = L.kernel;
    const cinG = Math.max(1, Math.floor(x[2] / groupsOf(L)));
    return {
      kernel: glorot([k, k, cinG, L.filters], k * k * cinG, k * k * L.filters),
      ...(L.bias ? { bias: zeros([L.filters]) } : {}),
      ...(L.dirac ? { alpha: ones([L.filters]) } : {}),
    };
  },
  tfjsForward({ layer: L, ins: [x], w }) {
    let kernel = w('kernel') as tf.Tensor4D;
    if (L.dirac) kernel = tf.add(kernel, tf.mul(diracDelta(kernel.shape), w('alpha'))) as tf.Tensor4D;
    const y = groupedConv2d(x as tf.Tensor4D, kernel, L.stride, L.padding, groupsOf(L));
    return L.bias ? tf.add(y, w('bias')) : y;
  },
  referenceForward({ layer: L, ins: [x], inShapes: [inShape], w }) {
    if (L.dirac) throw new Error('conv2d: the float64 reference reads inference graphs (fold Dirac convs first: models/fold.ts)');
    const g = convGeometry(inShape, L.kernel, L.stride, L.padding, L.filters, groupsOf(L));
    return conv2d(x, g, expandGroupedKernel(g, w('kernel')), L.bias ? w('bias') : undefined);
  },
  lowerHE({ layer: L, ins: [x], inShapes: [inShape], w, he }) {
    const geom = convGeometry(inShape, L.kernel, L.stride, L.padding, L.filters, groupsOf(L));
    return he.weighted(x, { kind: 'conv', geom, kernel: expandGroupedKernel(geom, w('kernel')) }, L.bias ? w('bias') : null);
  },
  levelCost: () => 1,
  polynomial: () => true,
  rangeProbes: () => [],
  foldsInto: null,
  prunable: {
    role: 'units',
    units: (L) => L.filters,
    withUnits: (L, filters) => ({ ...L, filters }),
    kernelInputAxis: 2,
    refuse(L) {
      if (L.dirac) return 'is a Dirac convolution (W + alpha*I), whose channels cannot be removed one by one';
      if (groupsOf(L) > 1) return `is a grouped convolution (${groupsOf(L)} groups), whose channels cannot be removed one by one without breaking its groups`;
      return null;
    },
  },
  packings: () => IMAGE_PACKINGS,
  examples: [
    { layer: { op: 'conv2d', filters: 4, kernel: 3, stride: 1, padding: 'same', bias: true }, ins: [[6, 6, 2]] },
    { layer: { op: 'conv2d', filters: 3, kernel: 3, stride: 2, padding: 'valid', bias: false }, ins: [[7, 7, 2]] },
    { layer: { op: 'conv2d', filters: 6, kernel: 3, stride: 1, padding: 'same', bias: true, groups: 2 }, ins: [[5, 5, 4]] },
    { layer: { op: 'conv2d', filters: 4, kernel: 3, stride: 1, padding: 'same', bias: true, groups: 4 }, ins: [[5, 5, 4]] },
  ],
  recipe: {
    type: 'conv',
    schema: convRecipe,
    nodeName: 'conv',
    toLayer: (l: z.infer<typeof convRecipe>) => ({
      op: 'conv2d',
      filters: l.filters,
      kernel: l.kernel,
      stride: l.stride,
      padding: l.padding,
      bias: l.bias,
      // groups: 1 stays absent, so such graphs equal those written before groups existed
      ...(l.groups && l.groups > 1 ? { groups: l.groups } : {}),
    }),
    fromLayer: (L) => ({ type: 'conv', filters: L.filters, kernel: L.kernel, stride: L.stride, padding: L.padding, bias: L.bias, ...(L.groups && L.groups > 1 ? { groups: L.groups } : {}) }),
  },
  // a Dirac conv's kernel is a training-time reparameterization: scaling it is not scaling the conv
  absorbsOutputAffine: (L) => (L.dirac ? null : { ...L, bias: true }),
  inferenceFold: (node, weights) => (node.layer.dirac ? foldDirac(node.name, node.layer, weights) : null),
  onnx: {
    // the exporter folds a Dirac conv first (inferenceFold): the kernel here is the one it computes with
    export({ layer: L, ins: [x], inShape, w, onnx }) {
      const k = w('kernel');
      const [ph, pw] = [samePads(inShape[0], L.kernel, L.stride), samePads(inShape[1], L.kernel, L.stride)];
      const pads = L.padding === 'same' ? [ph[0], pw[0], ph[1], pw[1]] : [0, 0, 0, 0];
      const inputs = [x.name, onnx.weight('kernel', [L.filters, k.shape[2], L.kernel, L.kernel], toOihw(k.data, k.shape))];
      if (L.bias) inputs.push(onnx.weight('bias', [L.filters], w('bias').data));
      const attributes = { kernel_shape: [L.kernel, L.kernel], strides: [L.stride, L.stride], pads, dilations: [1, 1], group: groupsOf(L) };
      return { name: onnx.node('Conv', inputs, attributes), layout: 'nchw' };
    },
  },
};

/** TensorFlow's "same" padding split (hepoly's convention): the extra row/column at the end. */
function samePads(size: number, k: number, stride: number): [number, number] {
  const total = Math.max((Math.ceil(size / stride) - 1) * stride + k - size, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

/** HWIO [k, k, cin, cout] -> OIHW [cout, cin, k, k], ONNX's kernel layout. */
function toOihw(data: Float32Array, [k, , cin, cout]: number[]): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < k; r++)
    for (let c = 0; c < k; c++) for (let i = 0; i < cin; i++) for (let o = 0; o < cout; o++) out[((o * cin + i) * k + r) * k + c] = data[((r * k + c) * cin + i) * cout + o];
  return out;
}

export function groupsOf(L: Conv): number {
  return L.groups ?? 1;
}

function checkGroups(L: Conv, cin: number, node: string): void {
  const g = groupsOf(L);
  if (g === 1) return;
  if (cin % g !== 0 || L.filters % g !== 0) {
    throw new Error(`layer ${node} (conv2d): groups ${g} must divide the ${cin} input channels and the ${L.filters} filters (depthwise: groups = filters = input channels)`);
  }
  if (L.dirac) throw new Error(`layer ${node} (conv2d): a Dirac convolution cannot be grouped`);
}

/**
 * Grouped convolution on tensors. One input channel per group is a depthwise convolution
 * with multiplier filters/cin (its output channel g*M + m reads input channel g, the grouped
 * layout, and the kernel [k, k, 1, cin*M] has the depthwise filter's [k, k, cin, M] element
 * order); otherwise each group is an ordinary convolution of its channel slice, concatenated.
 * Both differentiate on cpu and wasm (src/train/kernels/wasm-grad-kernels.ts supplies the
 * depthwise and filter gradients wasm lacks).
 */
export function groupedConv2d(x: tf.Tensor4D, kernel: tf.Tensor4D, stride: number, padding: 'same' | 'valid', groups: number): tf.Tensor4D {
  if (groups === 1) return tf.conv2d(x, kernel, stride, padding);
  const [k, , cinG, cout] = kernel.shape;
  const cin = x.shape[3];
  if (cinG === 1) return tf.depthwiseConv2d(x, tf.reshape(kernel, [k, k, cin, cout / cin]) as tf.Tensor4D, stride, padding);
  const xs = tf.split(x, groups, 3) as tf.Tensor4D[];
  const ks = tf.split(kernel, groups, 3) as tf.Tensor4D[];
  return tf.concat4d(
    xs.map((xi, g) => tf.conv2d(xi, ks[g], stride, padding)),
    3,
  );
}

const deltas = new Map<string, tf.Tensor4D>();

/** The identity convolution kernel (1 at the centre tap, channel i -> i), cached per shape. */
function diracDelta(shape: number[]): tf.Tensor4D {
  const key = shape.join('x');
  let d = deltas.get(key);
  if (!d || d.isDisposed) {
    d = tf.keep(tf.tensor4d(diracDeltaValues(shape), shape as [number, number, number, number]));
    deltas.set(key, d);
  }
  return d;
}

/** Values of the identity kernel [k, k, c, c] in HWIO order. */
export function diracDeltaValues(shape: number[]): Float32Array {
  const [kh, kw, cin, cout] = shape;
  const v = new Float32Array(kh * kw * cin * cout);
  const ch = Math.floor(kh / 2);
  const cw = Math.floor(kw / 2);
  for (let c = 0; c < Math.min(cin, cout); c++) v[((ch * kw + cw) * cin + c) * cout + c] = 1;
  return v;
}

/** kernel' = kernel + alpha * identity, `alpha` dropped: one plain conv for inference. */
function foldDirac(name: string, L: Conv, weights: WeightMap): { layer: Conv; weights: WeightMap } {
  const out: WeightMap = new Map(weights);
  const k = weights.get(weightKey(name, 'kernel'))!;
  const alpha = weights.get(weightKey(name, 'alpha'))!.data;
  const delta = diracDeltaValues(k.shape);
  const cout = k.shape[3];
  out.set(weightKey(name, 'kernel'), { shape: k.shape, data: Float32Array.from(k.data, (v, i) => v + delta[i] * alpha[i % cout]) });
  out.delete(weightKey(name, 'alpha'));
  const { dirac: _dirac, ...plain } = L;
  return { layer: plain, weights: out };
}
