import * as tf from '@tensorflow/tfjs-core';
import { type Graph, type GraphNode, type WeightMap, INPUT, inferShapes, paramDefs, weightKey } from './graph.js';
import { opOf } from '../ops/registry.js';
import type { ParamInit } from '../ops/types.js';
import { makeRng } from '../util/rng.js';

export { diracDeltaValues } from '../ops/conv2d.js';

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
  for (const node of graph.nodes) {
    const probe = (what: string, t: tf.Tensor) => {
      if (!opts.recordActivationInputs) return;
      // an op's own input is keyed by the node (the activations of ranges.json); internal
      // values by node/what, in both maps
      if (what === 'input') activationInputs.set(node.name, t);
      else {
        rangeProbes.set(`${node.name}/${what}`, t);
        activationInputs.set(`${node.name}/${what}`, t);
      }
    };
    const out = opOf(node).tfjsForward({
      layer: node.layer,
      node: node.name,
      ins: node.inputs.map((n) => values.get(n)!),
      w: (name) => weight(params, node, name),
      training: opts.training,
      probe,
      batchStats: (mean, variance) => batchStats.set(node.name, { mean, variance }),
    });
    values.set(node.name, out);
  }
  return { logits: values.get(graph.output)! as tf.Tensor2D, activationInputs, batchStats, rangeProbes };
}

function weight(params: ParamMap, node: GraphNode, name: string): tf.Tensor {
  const t = params.get(weightKey(node.name, name));
  if (!t) throw new Error(`missing weight ${weightKey(node.name, name)}`);
  return t;
}

/**
 * Seeded initial weights, drawn in plain JS so the same seed gives the same network on every
 * backend, as each op's params face says (Glorot-uniform kernels, zero biases, identity-like
 * batchnorm, near-identity polynomials, least-squares ReLU fits for relu-approx).
 */
export function initWeights(graph: Graph, seed: number): WeightMap {
  const shapes = inferShapes(graph);
  const weights: WeightMap = new Map();
  for (const node of graph.nodes) {
    for (const [param, def] of Object.entries(paramDefs(node, shapes.get(node.inputs[0])!))) {
      const data = new Float32Array(def.shape.reduce((a, b) => a * b, 1));
      fill(data, def.init, () => makeRng(seed, `init:${node.name}/${param}`));
      weights.set(weightKey(node.name, param), { shape: def.shape, data });
    }
  }
  return weights;
}

function fill(data: Float32Array, init: ParamInit, rng: () => { next(): number }): void {
  if (init.kind === 'ones') data.fill(1);
  else if (init.kind === 'values') data.set(init.values);
  else if (init.kind === 'uniform') {
    const r = rng();
    for (let i = 0; i < data.length; i++) data[i] = (r.next() * 2 - 1) * init.limit;
  }
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
