import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import { dense } from '../he/tensor-ops.js';
import type { OpDefOf } from './types.js';
import { HepolyError } from '../util/errors.js';
import { ALL_PACKINGS, glorot, needRank, posInt, zeros } from './shared.js';

/** `{type: dense}` in a cnn recipe: `units` defaults to the number of classes for the last layer. */
export const denseRecipe = z.strictObject({ type: z.literal('dense'), units: posInt.optional(), bias: z.boolean().default(true) });

/** A fully connected layer, y = x W + b, kernel [in, units]. */
export const denseOp: OpDefOf<'dense'> = {
  name: 'dense',
  family: 'dense',
  kind: 'linear',
  doc: 'fully connected y = x W + b, kernel [in, units]',
  attributes: z.strictObject({ units: z.number().int().positive(), bias: z.boolean() }),
  describe: (L) => `${L.units} units`,
  outputShape(L, [x], node) {
    needRank(node, 'dense', x, 1, 'a flat input', ': add a flatten layer before it');
    return [L.units];
  },
  params: (L, x) => ({ kernel: glorot([x[0], L.units], x[0], L.units), ...(L.bias ? { bias: zeros([L.units]) } : {}) }),
  tfjsForward({ layer: L, ins: [x], w }) {
    const y = tf.matMul(x as tf.Tensor2D, w('kernel') as tf.Tensor2D);
    return L.bias ? tf.add(y, w('bias')) : y;
  },
  referenceForward: ({ layer: L, ins: [x], w }) => dense(x, w('kernel'), L.units, L.bias ? w('bias') : undefined),
  lowerHE: ({ layer: L, ins: [x], inShapes: [inShape], w, he }) =>
    he.weighted(x, { kind: 'dense', inSize: inShape[0], units: L.units, kernel: w('kernel') }, L.bias ? w('bias') : null),
  // one plaintext product, rescaled once
  levelCost: () => 1,
  polynomial: () => true,
  rangeProbes: () => [],
  foldsInto: null,
  prunable: { role: 'units', units: (L) => L.units, withUnits: (L, units) => ({ ...L, units }), kernelInputAxis: 0, refuse: () => null },
  packings: () => ALL_PACKINGS,
  absorbsOutputAffine: (L) => ({ ...L, bias: true }),
  recipe: {
    type: 'dense',
    schema: denseRecipe,
    nodeName: 'dense',
    flatInput: true,
    toLayer(l: z.infer<typeof denseRecipe>, ctx) {
      if (ctx.isLast) return { op: 'dense', units: ctx.classes, bias: l.bias };
      if (l.units === undefined) throw new HepolyError(`${ctx.at('units')}: a hidden dense layer needs units (only the last, the classifier, defaults to the class count)`);
      return { op: 'dense', units: l.units, bias: l.bias };
    },
    // the classifier's units are the class count: left out, as recipes write it
    fromLayer: (L, { isLast }) => ({ type: 'dense', ...(isLast ? {} : { units: L.units }), bias: L.bias }),
  },
  onnx: {
    export({ layer: L, ins: [x], w, onnx }) {
      const inputs = [x.name, onnx.weight('kernel', w('kernel').shape, w('kernel').data)];
      if (L.bias) inputs.push(onnx.weight('bias', [L.units], w('bias').data));
      return { name: onnx.node('Gemm', inputs), layout: 'vec' };
    },
  },
  examples: [{ layer: { op: 'dense', units: 3, bias: true }, ins: [[5]] }],
};
