import * as tf from '@tensorflow/tfjs-core';
import {
  type Graph,
  type GraphNode,
  type WeightMap,
  INPUT,
  inferShapes,
  isSequenceOp,
  layerOf,
  paramShapes,
  weightKey,
} from './graph.js';
import { sequenceForward, sequenceInit, geluTf } from './sequence-ops.js';
import { initialPolynomialCoeffs, polynomialTf } from '../layers/polynomial.js';
import { fitReluPolynomial } from '../layers/relu-approx.js';
import { batchNormTrain } from '../layers/batchnorm.js';
import { batchNormTrainFused } from '../train/kernels/fused-kernels.js';
import { makeRng } from '../util/rng.js';

/**
 * The plaintext interpreter of a `Graph`: tfjs ops, used for training (with gradients),
 * evaluation and as the reference the HE evaluator is checked against.
 */

export type ParamMap = Map<string, tf.Tensor>;

export interface ForwardOptions {
  training: boolean;
  /** keep each activation's input tensor (for range statistics and range penalties) */
  recordActivationInputs?: boolean;
}

export interface ForwardResult {
  logits: tf.Tensor2D;
  activationInputs: Map<string, tf.Tensor>;
  /** batch mean and variance of each batchnorm node (training mode only) */
  batchStats: Map<string, { mean: tf.Tensor; variance: tf.Tensor }>;
  /**
   * with `recordActivationInputs`: intermediate values whose range the HE evaluator needs
   * besides activation inputs, keyed `${node}/${what}`: `attn1/denominator` (power-softmax's
   * sum of s^p), `ln1/variance` (layer-norm variance). They are also put in
   * `activationInputs`, so range statistics (ranges.json) record them under the same keys.
   */
  rangeProbes: Map<string, tf.Tensor>;
}

export function forward(graph: Graph, params: ParamMap, x: tf.Tensor, opts: ForwardOptions): ForwardResult {
  const values = new Map<string, tf.Tensor>([[INPUT, x]]);
  const activationInputs = new Map<string, tf.Tensor>();
  const batchStats = new Map<string, { mean: tf.Tensor; variance: tf.Tensor }>();
  const rangeProbes = new Map<string, tf.Tensor>();
  const p = (node: GraphNode, name: string): tf.Tensor => {
    const t = params.get(weightKey(node.name, name));
    if (!t) throw new Error(`missing weight ${weightKey(node.name, name)}`);
    return t;
  };
  for (const node of graph.nodes) {
    const ins = node.inputs.map((n) => values.get(n)!);
    const inp = ins[0];
    const L = node.layer;
    let out: tf.Tensor;
    const seq = layerOf(node);
    if (isSequenceOp(seq)) {
      const probe = opts.recordActivationInputs
        ? (what: string, t: tf.Tensor) => {
            rangeProbes.set(`${node.name}/${what}`, t);
            activationInputs.set(`${node.name}/${what}`, t);
          }
        : null;
      values.set(node.name, sequenceForward(seq, ins, (name) => p(node, name), probe));
      continue;
    }
    switch (L.op) {
      case 'dense': {
        out = tf.matMul(inp as tf.Tensor2D, p(node, 'kernel') as tf.Tensor2D);
        if (L.bias) out = tf.add(out, p(node, 'bias'));
        break;
      }
      case 'conv2d': {
        let kernel = p(node, 'kernel') as tf.Tensor4D;
        if (L.dirac) kernel = tf.add(kernel, tf.mul(diracDelta(kernel.shape), p(node, 'alpha'))) as tf.Tensor4D;
        out = tf.conv2d(inp as tf.Tensor4D, kernel, L.stride, L.padding);
        if (L.bias) out = tf.add(out, p(node, 'bias'));
        break;
      }
      case 'activation': {
        if (opts.recordActivationInputs) activationInputs.set(node.name, inp);
        const a = L.activation;
        if (a.kind === 'relu') out = tf.relu(inp);
        else if (a.kind === 'gelu') out = geluTf(inp);
        else if (a.kind === 'square') out = tf.square(inp);
        else out = polynomialTf(inp, p(node, 'coeffs') as tf.Tensor1D);
        break;
      }
      case 'avgpool':
        out = tf.avgPool(inp as tf.Tensor4D, L.size, L.stride, 'valid');
        break;
      case 'maxpool':
        out = tf.maxPool(inp as tf.Tensor4D, L.size, L.stride, 'valid');
        break;
      case 'global_avgpool':
        out = tf.mean(inp, [1, 2]);
        break;
      case 'flatten':
        out = tf.reshape(inp, [inp.shape[0], -1]);
        break;
      case 'pad':
        out = tf.pad(inp, [
          [0, 0],
          [L.top, L.bottom],
          [L.left, L.right],
          [0, 0],
        ]);
        break;
      case 'add':
        out = ins.slice(1).reduce((acc, t) => tf.add(acc, t), inp);
        break;
      case 'batchnorm': {
        let mean: tf.Tensor;
        let variance: tf.Tensor;
        if (opts.training) {
          const bn =
            batchNormTrainFused(inp, p(node, 'gamma'), p(node, 'beta'), L.epsilon) ?? batchNormTrain(inp, p(node, 'gamma'), p(node, 'beta'), L.epsilon);
          batchStats.set(node.name, { mean: bn.mean, variance: bn.variance });
          out = bn.y;
          break;
        }
        mean = p(node, 'moving_mean');
        variance = p(node, 'moving_variance');
        out = tf.batchNorm(inp, mean, variance, p(node, 'beta'), p(node, 'gamma'), L.epsilon);
        break;
      }
    }
    values.set(node.name, out);
  }
  return { logits: values.get(graph.output)! as tf.Tensor2D, activationInputs, batchStats, rangeProbes };
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

/**
 * Seeded initial weights, drawn in plain JS so the same seed gives the same network on every
 * backend: Glorot-uniform kernels, zero biases, identity-like batchnorm, near-identity
 * polynomials, least-squares ReLU fits for relu-approx.
 */
export function initWeights(graph: Graph, seed: number): WeightMap {
  const shapes = inferShapes(graph);
  const weights: WeightMap = new Map();
  for (const node of graph.nodes) {
    const ps = paramShapes(node, shapes.get(node.inputs[0])!);
    for (const [param, shape] of Object.entries(ps)) {
      const size = shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(size);
      const L = node.layer;
      if (isSequenceOp(layerOf(node)) && param !== 'kernel' && param !== 'gamma') {
        sequenceInit(layerOf(node).op, param, data, shape, makeRng(seed, `init:${node.name}/${param}`));
      } else if (param === 'kernel') {
        const fanIn = shape.slice(0, -1).reduce((a, b) => a * b, 1);
        const fanOut = L.op === 'conv2d' ? shape[0] * shape[1] * shape[3] : shape[shape.length - 1];
        const limit = Math.sqrt(6 / (fanIn + fanOut));
        const rng = makeRng(seed, `init:${node.name}/${param}`);
        for (let i = 0; i < size; i++) data[i] = (rng.next() * 2 - 1) * limit;
      } else if (param === 'gamma' || param === 'moving_variance' || param === 'alpha') {
        data.fill(1);
      } else if (param === 'coeffs' && L.op === 'activation') {
        const a = L.activation;
        if (a.kind === 'relu-approx') data.set(fitReluPolynomial(a.degree, a.range));
        else data.set(initialPolynomialCoeffs(size - 1));
      }
      weights.set(weightKey(node.name, param), { shape, data });
    }
  }
  return weights;
}

/** Inference on plain arrays: logits, `count * classes` values. */
export function predict(graph: Graph, weights: WeightMap, x: Float32Array, count: number, batch = 256): Float32Array {
  const params: ParamMap = new Map();
  for (const [k, w] of weights) params.set(k, tf.tensor(w.data, w.shape));
  const per = graph.inputShape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(count * graph.classes);
  try {
    for (let start = 0; start < count; start += batch) {
      const n = Math.min(batch, count - start);
      const logits = tf.tidy(() => {
        const xb = tf.tensor(x.subarray(start * per, (start + n) * per), [n, ...graph.inputShape]);
        return forward(graph, params, xb, { training: false }).logits;
      });
      out.set(logits.dataSync(), start * graph.classes);
      logits.dispose();
    }
  } finally {
    for (const t of params.values()) t.dispose();
  }
  return out;
}
