import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { pad } from '../he/tensor-ops.js';
import type { OpDefOf } from './types.js';
import { HepolyError } from '../util/errors.js';
import { ALL_PACKINGS, IMAGE_PACKINGS, needImage, posInt, size } from './shared.js';

/** `{type: flatten}` and `{type: pad, to}` (zero-pad H and W to this size, e.g. 28 -> 32) in a cnn recipe. */
export const flattenRecipe = z.strictObject({ type: z.literal('flatten') });
export const padRecipe = z.strictObject({
  type: z.literal('pad'),
  /** pad H and W with zeros to this size (e.g. 28 -> 32) */
  to: posInt,
});

/** Ops that move or add values without weights: relabelings and sums, free under CKKS. */

export const flattenOp: OpDefOf<'flatten'> = {
  name: 'flatten',
  family: 'structure',
  kind: 'structure',
  doc: 'row-major (h, w, c) flatten to a vector',
  attributes: z.strictObject({}),
  describe: () => '',
  outputShape: (_L, [x]) => [size(x)],
  params: () => ({}),
  tfjsForward: ({ ins: [x] }) => tf.reshape(x, [x.shape[0], -1]),
  referenceForward: ({ ins: [x] }) => x,
  lowerHE: ({ ins: [x], he }) => he.struct(x, { kind: 'flatten' }),
  levelCost: () => 0,
  polynomial: () => true,
  rangeProbes: () => [],
  foldsInto: 'relabeling, no operation',
  prunable: { role: 'passes', params: [], flattens: true },
  packings: () => IMAGE_PACKINGS,
  recipe: { type: 'flatten', schema: flattenRecipe, nodeName: 'flatten', toLayer: () => ({ op: 'flatten' }), fromLayer: () => ({ type: 'flatten' }) },
  onnx: {
    export({ ins: [x], onnx }) {
      if (x.layout === 'vec') return x;
      // hepoly flattens (h, w, c): back to NHWC first, so the next Gemm's rows stay in hepoly's order
      const nhwc = onnx.node('Transpose', [x.name], { perm: [0, 2, 3, 1] });
      return { name: onnx.node('Flatten', [nhwc], { axis: 1 }), layout: 'vec' };
    },
  },
  examples: [{ layer: { op: 'flatten' }, ins: [[3, 3, 2]] }],
};

const nonNegative = z.number().int().min(0);

export const padOp: OpDefOf<'pad'> = {
  name: 'pad',
  family: 'structure',
  kind: 'structure',
  doc: 'zero padding of H and W',
  attributes: z.strictObject({ top: nonNegative, bottom: nonNegative, left: nonNegative, right: nonNegative }),
  describe: (L) => `+${L.top + L.bottom}x${L.left + L.right}`,
  outputShape(L, [x], node) {
    needImage(node, 'pad', x);
    return [x[0] + L.top + L.bottom, x[1] + L.left + L.right, x[2]];
  },
  params: () => ({}),
  tfjsForward: ({ layer: L, ins: [x] }) =>
    tf.pad(x, [
      [0, 0],
      [L.top, L.bottom],
      [L.left, L.right],
      [0, 0],
    ]),
  referenceForward: ({ layer: L, ins: [x], inShapes: [s] }) => pad(x, s, L),
  lowerHE: ({ layer: L, ins: [x], he }) => he.struct(x, { kind: 'pad', top: L.top, bottom: L.bottom, left: L.left, right: L.right }),
  levelCost: () => 0,
  polynomial: () => true,
  rangeProbes: () => [],
  foldsInto: 'relabeling, no operation',
  prunable: { role: 'passes', params: [] },
  packings: () => IMAGE_PACKINGS,
  recipe: {
    type: 'pad',
    schema: padRecipe,
    nodeName: 'pad',
    toLayer(l: z.infer<typeof padRecipe>, ctx) {
      const [h, w] = ctx.inShape;
      if (l.to < h || l.to < w) throw new HepolyError(`${ctx.at('to')}: cannot pad [${h}, ${w}] down to ${l.to}. Use a size >= ${Math.max(h, w)}`);
      const dh = l.to - h;
      const dw = l.to - w;
      return { op: 'pad', top: Math.floor(dh / 2), bottom: dh - Math.floor(dh / 2), left: Math.floor(dw / 2), right: dw - Math.floor(dw / 2) };
    },
    // `to` is the padded size; the rebuild check catches an uneven pad it cannot express
    fromLayer: (_L, { outShape }) => ({ type: 'pad', to: outShape[0] }),
  },
  onnx: {
    export({ layer: L, ins: [x], onnx }) {
      const pads = onnx.ints('pads', [0, 0, L.top, L.left, 0, 0, L.bottom, L.right]);
      return { name: onnx.node('Pad', [x.name, pads], { mode: 'constant' }), layout: 'nchw' };
    },
  },
  examples: [{ layer: { op: 'pad', top: 1, bottom: 2, left: 0, right: 1 }, ins: [[4, 4, 2]] }],
};

export const addOp: OpDefOf<'add'> = {
  name: 'add',
  family: 'structure',
  kind: 'structure',
  doc: 'element-wise sum of all inputs (residual connections)',
  attributes: z.strictObject({}),
  describe: () => '',
  outputShape(_L, ins, node) {
    for (const s of ins) {
      if (s.join(',') !== ins[0].join(',')) {
        throw new Error(`layer ${node} (add): inputs have different shapes [${ins.map((i) => i.join('x')).join('] vs [')}]`);
      }
    }
    return ins[0];
  },
  params: () => ({}),
  tfjsForward: ({ ins }) => ins.slice(1).reduce((acc, t) => tf.add(acc, t), ins[0]),
  referenceForward: ({ ins }) => ins[0].map((_, i) => ins.reduce((acc, t) => acc + t[i], 0)),
  lowerHE: ({ ins, he }) => he.sum(ins),
  levelCost: () => 0,
  polynomial: () => true,
  rangeProbes: () => [],
  foldsInto: 'folded into a neighbouring linear layer',
  prunable: { role: 'mixes' },
  packings: () => ALL_PACKINGS,
  onnx: {
    export({ ins: [x, ...others], onnx }) {
      let sum = x.name;
      for (const other of others) sum = onnx.node('Add', [sum, other.name]);
      return { name: sum, layout: x.layout };
    },
  },
  examples: [{ layer: { op: 'add' }, ins: [[4, 4, 2], [4, 4, 2]] }],
};
