import * as tf from '@tensorflow/tfjs-core';
import { polynomial } from '../he/tensor-ops.js';
import { initialPolynomialCoeffs, polynomialTf } from '../layers/polynomial.js';
import { fitReluPolynomial } from '../layers/relu-approx.js';
import type { ActivationSpec, LayerSpec } from '../models/graph.js';
import type { OnnxBuilder, OnnxExportContext } from './onnx-face.js';
import { HepolyError } from '../util/errors.js';
import { ActivationSchema } from './activation-schema.js';
import { toActivationSpec } from '../models/activation.js';
import { z } from 'zod';
import type { OpDefOf, ParamDef } from './types.js';
import { ALL_PACKINGS, noPacking } from './shared.js';

/** `{type: activation}` in a cnn recipe; without `activation`, the model's `activation` is used. */
export const activationRecipe = z.strictObject({ type: z.literal('activation'), activation: ActivationSchema.optional() });

/**
 * Element-wise activations. The polynomial ones (quad, poly, square, relu-approx) run under
 * CKKS: the compiler evaluates the powers with a depth-optimal tree and folds the coefficients
 * into the next linear layer (src/he/compile.ts), so a degree-d polynomial costs
 * ceil(log2 d) levels. ReLU and GELU are for baselines and teachers.
 */
export const activationOp: OpDefOf<'activation'> = {
  name: 'activation',
  family: 'activation',
  kind: 'activation',
  doc: 'element-wise: quad, poly (degree d), square, relu-approx (fixed or trainable ReLU fit); relu, gelu (not HE)',
  attributes: z.strictObject({ activation: ActivationSchema }),
  describe: ({ activation: a }) => a.kind + ('degree' in a ? ` d${a.degree}` : ''),
  outputShape: (_L, [x]) => x,
  params({ activation: a }): Record<string, ParamDef> {
    const n = activationCoeffCount(a);
    if (!n) return {};
    const values = a.kind === 'relu-approx' ? Float32Array.from(fitReluPolynomial(a.degree, a.range)) : initialPolynomialCoeffs(n - 1);
    const coeffs: ParamDef = { shape: [n], init: { kind: 'values', values }, trainable: a.kind !== 'relu-approx' || a.trainable };
    return { coeffs };
  },
  tfjsForward({ layer: { activation: a }, ins: [x], w, probe }) {
    probe('input', x);
    if (a.kind === 'relu') return tf.relu(x);
    if (a.kind === 'gelu') return geluTf(x);
    if (a.kind === 'square') return tf.square(x);
    return polynomialTf(x, w('coeffs') as tf.Tensor1D);
  },
  referenceForward({ layer: { activation: a }, ins: [x], w }) {
    if (a.kind === 'relu') return x.map((v) => Math.max(0, v));
    if (a.kind === 'gelu') return x.map(gelu);
    return polynomial(x, a.kind === 'square' ? [0, 0, 1] : w('coeffs'));
  },
  lowerHE({ layer: { activation: a }, ins: [x], w, he }) {
    if (a.kind === 'relu' || a.kind === 'gelu') throw new Error(`activation ${a.kind}: refused before compiling`);
    return he.polynomial(x, a.kind === 'square' ? Float64Array.from([0, 0, 1]) : w('coeffs'));
  },
  levelCost: ({ activation }) => activationDepth(activation),
  polynomial: ({ activation: a }) => (a.kind === 'relu' || a.kind === 'gelu' ? `activation ${a.kind}` : true),
  rangeProbes: () => ['input'],
  fitInterval: ({ activation: a }) => (a.kind === 'relu-approx' ? { range: a.range, label: 'relu-approx interval' } : null),
  foldsInto: null,
  prunable: { role: 'passes', params: [] },
  packings: ({ activation: a }) => (a.kind === 'relu' || a.kind === 'gelu' ? noPacking(`${a.kind} is not a polynomial`) : ALL_PACKINGS),
  recipe: {
    type: 'activation',
    schema: activationRecipe,
    nodeName: 'act',
    toLayer: (l: z.infer<typeof activationRecipe>, ctx) => ({ op: 'activation', activation: l.activation ? toActivationSpec(l.activation) : ctx.activation }),
    fromLayer: (L) => ({ type: 'activation', activation: activationConfig(L.activation) }),
  },
  onnx: { export: ({ layer, node, ins: [x], w, onnx, where }) => ({ name: activationOnnx(layer.activation, node, x.name, w, onnx, where), layout: x.layout }) },
  examples: (
    [{ kind: 'quad' }, { kind: 'poly', degree: 3 }, { kind: 'square' }, { kind: 'relu-approx', degree: 4, range: [-4, 4], trainable: false }, { kind: 'relu' }, { kind: 'gelu' }] as ActivationSpec[]
  ).map((activation) => ({ layer: { op: 'activation' as const, activation }, ins: [[4, 4, 2]] })),
};

/** c0 + c1 x + c2 x^2 + ... as Mul/Add of scalar initializers (hepoly import reads it back as the same activation). */
function activationOnnx(a: ActivationSpec, node: string, x: string, w: OnnxExportContext<LayerSpec>['w'], onnx: OnnxBuilder, where: string): string {
  if (a.kind === 'relu') return onnx.node('Relu', [x]);
  if (a.kind === 'gelu') throw new HepolyError(`${where}: layer ${node}: the gelu activation has no exact standard ONNX form before opset 20. Export a polynomial network`);
  const coeffs = a.kind === 'square' ? [0, 0, 1] : Array.from(w('coeffs').data);
  if (coeffs.length === 3 && coeffs[0] === 0 && coeffs[1] === 0 && coeffs[2] === 1) return onnx.node('Mul', [x, x]);
  const powers = [x];
  for (let k = 2; k < coeffs.length; k++) powers.push(onnx.node('Mul', [powers[powers.length - 1], x]));
  let sum: string | null = null;
  for (let k = 1; k < coeffs.length; k++) {
    if (coeffs[k] === 0) continue;
    const term = onnx.node('Mul', [powers[k - 1], onnx.weight(`c${k}`, [], [coeffs[k]])]);
    sum = sum ? onnx.node('Add', [sum, term]) : term;
  }
  if (sum === null) throw new HepolyError(`${where}: layer ${node}: the activation's polynomial is a constant (${coeffs[0]}): nothing to export. Retrain the checkpoint`);
  return coeffs[0] === 0 ? sum : onnx.node('Add', [sum, onnx.weight('c0', [], [coeffs[0]])]);
}

/** An activation as a recipe writes it (`activation: {kind: poly, degree: 3}`). */
export function activationConfig(a: ActivationSpec): Record<string, unknown> {
  return a.kind === 'poly' ? { kind: 'poly', degree: a.degree } : a.kind === 'relu-approx' ? { ...a } : { kind: a.kind };
}

/** Number of polynomial coefficients an activation carries as weights (0 for fixed ones). */
export function activationCoeffCount(a: ActivationSpec): number {
  if (a.kind === 'quad') return 3;
  if (a.kind === 'poly' || a.kind === 'relu-approx') return a.degree + 1;
  return 0;
}

/**
 * Multiplicative depth of one activation under CKKS (levels consumed), as the compiler spends
 * it: powers up to x^d by repeated squaring and products, depth ceil(log2 d); a degree-1
 * polynomial is affine and folds into its neighbours (0 levels).
 */
export function activationDepth(a: ActivationSpec): number {
  if (a.kind === 'relu' || a.kind === 'gelu') return Infinity;
  if (a.kind === 'quad' || a.kind === 'square') return 1;
  return a.degree <= 1 ? 0 : Math.ceil(Math.log2(a.degree));
}

/** GELU, tanh form (Hendrycks & Gimpel): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
export function geluTf(x: tf.Tensor): tf.Tensor {
  const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
}

function gelu(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
}
