import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { batchNormTrain } from '../layers/batchnorm.js';
import { batchNormTrainFused } from '../train/kernels/fused-kernels.js';
import type { OpDefOf, ParamDef } from './types.js';
import { ALL_PACKINGS, ones, zeros } from './shared.js';

/** `{type: batchnorm}` in a cnn recipe. */
export const batchnormRecipe = z.strictObject({
  type: z.literal('batchnorm'),
  momentum: z.number().min(0).max(1).default(0.9),
  epsilon: z.number().positive().default(1e-3),
});

/**
 * Batch normalization over the last axis. At inference it is a per-channel affine map,
 * s = gamma / sqrt(var + eps), y = s x + (beta - s mean), which the HE compiler folds into the
 * neighbouring dense/conv kernel: no level.
 */
export const batchnormOp: OpDefOf<'batchnorm'> = {
  name: 'batchnorm',
  family: 'batchnorm',
  kind: 'normalization',
  doc: 'batch normalization (last axis); folded into a neighbouring linear layer at inference',
  attributes: z.strictObject({ momentum: z.number().min(0).max(1), epsilon: z.number().positive() }),
  describe: () => '',
  outputShape: (_L, [x]) => x,
  params(_L, x) {
    const c = [x[x.length - 1]];
    const fixed = (p: ParamDef): ParamDef => ({ ...p, trainable: false });
    return { gamma: ones(c), beta: zeros(c), moving_mean: fixed(zeros(c)), moving_variance: fixed(ones(c)) };
  },
  movingStatistics: { mean: 'moving_mean', variance: 'moving_variance', momentum: (L) => L.momentum },
  tfjsForward({ layer: L, ins: [x], w, training, batchStats }) {
    if (training) {
      const bn = batchNormTrainFused(x, w('gamma'), w('beta'), L.epsilon) ?? batchNormTrain(x, w('gamma'), w('beta'), L.epsilon);
      batchStats(bn.mean, bn.variance);
      return bn.y;
    }
    return tf.batchNorm(x, w('moving_mean'), w('moving_variance'), w('beta'), w('gamma'), L.epsilon);
  },
  referenceForward({ layer: L, ins: [x], w }) {
    const { scale, shift } = inferenceAffine(L.epsilon, w);
    const C = scale.length;
    return x.map((v, i) => scale[i % C] * v + shift[i % C]);
  },
  lowerHE({ layer: L, ins: [x], w, he }) {
    const { scale, shift } = inferenceAffine(L.epsilon, w);
    const C = scale.length;
    const n = x.shape.reduce((a, b) => a * b, 1);
    return he.affine(x, Float64Array.from({ length: n }, (_, i) => scale[i % C]), Float64Array.from({ length: n }, (_, i) => shift[i % C]));
  },
  levelCost: () => 0,
  polynomial: () => true,
  rangeProbes: () => [],
  foldsInto: 'folded into a neighbouring linear layer',
  prunable: { role: 'passes', params: ['gamma', 'beta', 'moving_mean', 'moving_variance'] },
  packings: () => ALL_PACKINGS,
  recipe: {
    type: 'batchnorm',
    schema: batchnormRecipe,
    nodeName: 'bn',
    toLayer: (l: z.infer<typeof batchnormRecipe>) => ({ op: 'batchnorm', momentum: l.momentum, epsilon: l.epsilon }),
    fromLayer: (L) => ({ type: 'batchnorm', momentum: L.momentum, epsilon: L.epsilon }),
  },
  onnx: {
    export({ layer: L, ins: [x], w, onnx }) {
      const stats = ['gamma', 'beta', 'moving_mean', 'moving_variance'].map((q) => onnx.weight(q, w(q).shape, w(q).data));
      return { name: onnx.node('BatchNormalization', [x.name, ...stats], { epsilon: L.epsilon }), layout: x.layout };
    },
  },
  examples: [{ layer: { op: 'batchnorm', momentum: 0.9, epsilon: 1e-3 }, ins: [[4, 4, 3]] }],
};

/** The per-channel scale and shift of inference-mode batchnorm. */
function inferenceAffine(epsilon: number, w: (p: string) => ArrayLike<number>): { scale: Float64Array; shift: Float64Array } {
  const gamma = w('gamma');
  const beta = w('beta');
  const mean = w('moving_mean');
  const variance = w('moving_variance');
  const scale = Float64Array.from({ length: gamma.length }, (_, c) => gamma[c] / Math.sqrt(variance[c] + epsilon));
  const shift = Float64Array.from({ length: gamma.length }, (_, c) => beta[c] - scale[c] * mean[c]);
  return { scale, shift };
}
