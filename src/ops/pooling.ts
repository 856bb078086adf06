import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { globalSum, poolShape, sumpool } from '../he/tensor-ops.js';
import type { LayerSpec } from '../models/graph.js';
import type { OnnxFace } from './onnx-face.js';
import type { OpDefOf } from './types.js';
import { IMAGE_PACKINGS, needImage, noPacking, posInt } from './shared.js';

/** `{type: avgpool | maxpool, size, stride}` in a cnn recipe: stride defaults to the size. */
export const avgpoolRecipe = z.strictObject({ type: z.literal('avgpool'), size: posInt.default(2), stride: posInt.optional() });
export const maxpoolRecipe = z.strictObject({ type: z.literal('maxpool'), size: posInt.default(2), stride: posInt.optional() });
export const globalAvgpoolRecipe = z.strictObject({ type: z.literal('global_avgpool') });

/**
 * Pooling. Under CKKS an average pool is additions (a struct step) plus a constant 1/size^2
 * that folds into the next linear layer, so it costs no level; max pooling compares, which
 * CKKS cannot do.
 */

const window = z.strictObject({ size: z.number().int().positive(), stride: z.number().int().positive() });

function windowShape(op: string, L: { size: number; stride: number }, x: number[], node: string): number[] {
  needImage(node, op, x);
  const out = poolShape(x, L.size, L.stride);
  if (out[0] < 1 || out[1] < 1) throw new Error(`layer ${node} (${op}): window ${L.size} does not fit input [${x.join(', ')}]`);
  return out;
}

/** ONNX's pooling of valid windows, as hepoly pools. */
function windowOnnx(opType: 'AveragePool' | 'MaxPool'): OnnxFace<Extract<LayerSpec, { op: 'avgpool' | 'maxpool' }>> {
  return {
    export: ({ layer: L, ins: [x], onnx }) => ({ name: onnx.node(opType, [x.name], { kernel_shape: [L.size, L.size], strides: [L.stride, L.stride] }), layout: 'nchw' }),
  };
}

const AVERAGE_FOLDS = 'ciphertext additions; 1/size^2 folded into a neighbour';

export const avgpoolOp: OpDefOf<'avgpool'> = {
  name: 'avgpool',
  family: 'pooling',
  kind: 'pooling',
  doc: 'average pooling (valid windows): additions plus a folded 1/size^2',
  attributes: window,
  describe: (L) => `${L.size}x${L.size} s${L.stride}`,
  outputShape: (L, [x], node) => windowShape('avgpool', L, x, node),
  params: () => ({}),
  tfjsForward: ({ layer: L, ins: [x] }) => tf.avgPool(x as tf.Tensor4D, L.size, L.stride, 'valid'),
  referenceForward: ({ layer: L, ins: [x], inShapes: [s] }) => sumpool(x, s, L.size, L.stride).map((v) => v / (L.size * L.size)),
  lowerHE({ layer: L, ins: [x], he }) {
    const sum = he.struct(x, { kind: 'sumpool', size: L.size, stride: L.stride });
    const n = sum.shape.reduce((a, b) => a * b, 1);
    return he.affine(sum, new Float64Array(n).fill(1 / (L.size * L.size)), new Float64Array(n));
  },
  levelCost: () => 0,
  polynomial: () => true,
  rangeProbes: () => [],
  foldsInto: AVERAGE_FOLDS,
  prunable: { role: 'passes', params: [] },
  packings: () => IMAGE_PACKINGS,
  recipe: {
    type: 'avgpool',
    schema: avgpoolRecipe,
    nodeName: 'avgpool',
    toLayer: (l: z.infer<typeof avgpoolRecipe>) => ({ op: 'avgpool', size: l.size, stride: l.stride ?? l.size }),
    fromLayer: (L) => ({ type: 'avgpool', size: L.size, stride: L.stride }),
  },
  onnx: windowOnnx('AveragePool'),
  examples: [{ layer: { op: 'avgpool', size: 2, stride: 2 }, ins: [[6, 6, 2]] }],
};

export const maxpoolOp: OpDefOf<'maxpool'> = {
  name: 'maxpool',
  family: 'pooling',
  kind: 'pooling',
  doc: 'max pooling (valid windows): baselines only, not a polynomial',
  attributes: window,
  describe: (L) => `${L.size}x${L.size} s${L.stride}`,
  outputShape: (L, [x], node) => windowShape('maxpool', L, x, node),
  params: () => ({}),
  tfjsForward: ({ layer: L, ins: [x] }) => tf.maxPool(x as tf.Tensor4D, L.size, L.stride, 'valid'),
  referenceForward({ layer: L, ins: [x], inShapes: [s] }) {
    const [oh, ow, C] = poolShape(s, L.size, L.stride);
    const out = new Float64Array(oh * ow * C).fill(-Infinity);
    for (let y = 0; y < oh; y++)
      for (let xx = 0; xx < ow; xx++)
        for (let dy = 0; dy < L.size; dy++)
          for (let dx = 0; dx < L.size; dx++)
            for (let c = 0; c < C; c++) {
              const o = (y * ow + xx) * C + c;
              out[o] = Math.max(out[o], x[((y * L.stride + dy) * s[1] + xx * L.stride + dx) * C + c]);
            }
    return out;
  },
  lowerHE: () => {
    throw new Error('maxpool: refused before compiling');
  },
  levelCost: () => Infinity,
  polynomial: () => 'maxpool',
  rangeProbes: () => [],
  foldsInto: null,
  prunable: { role: 'passes', params: [] },
  packings: () => noPacking('max pooling is not a polynomial: use avgpool'),
  recipe: {
    type: 'maxpool',
    schema: maxpoolRecipe,
    nodeName: 'maxpool',
    toLayer: (l: z.infer<typeof maxpoolRecipe>) => ({ op: 'maxpool', size: l.size, stride: l.stride ?? l.size }),
    fromLayer: (L) => ({ type: 'maxpool', size: L.size, stride: L.stride }),
  },
  onnx: windowOnnx('MaxPool'),
  examples: [{ layer: { op: 'maxpool', size: 2, stride: 2 }, ins: [[6, 6, 2]] }],
};

export const globalAvgpoolOp: OpDefOf<'global_avgpool'> = {
  name: 'global_avgpool',
  family: 'pooling',
  kind: 'pooling',
  doc: 'mean over H and W: [H, W, C] -> [C]',
  attributes: z.strictObject({}),
  describe: () => '',
  outputShape(_L, [x], node) {
    needImage(node, 'global_avgpool', x);
    return [x[2]];
  },
  params: () => ({}),
  tfjsForward: ({ ins: [x] }) => tf.mean(x, [1, 2]),
  referenceForward: ({ ins: [x], inShapes: [s] }) => globalSum(x, s).map((v) => v / (s[0] * s[1])),
  lowerHE({ ins: [x], inShapes: [s], he }) {
    const sum = he.struct(x, { kind: 'globalsum' });
    const n = sum.shape[0];
    return he.affine(sum, new Float64Array(n).fill(1 / (s[0] * s[1])), new Float64Array(n));
  },
  levelCost: () => 0,
  polynomial: () => true,
  rangeProbes: () => [],
  foldsInto: AVERAGE_FOLDS,
  prunable: { role: 'passes', params: [] },
  packings: () => IMAGE_PACKINGS,
  recipe: { type: 'global_avgpool', schema: globalAvgpoolRecipe, nodeName: 'gap', toLayer: () => ({ op: 'global_avgpool' }), fromLayer: () => ({ type: 'global_avgpool' }) },
  onnx: {
    export({ ins: [x], onnx }) {
      const pooled = onnx.node('GlobalAveragePool', [x.name]);
      return { name: onnx.node('Flatten', [pooled], { axis: 1 }), layout: 'vec' };
    },
  },
  examples: [{ layer: { op: 'global_avgpool' }, ins: [[4, 4, 3]] }],
};
