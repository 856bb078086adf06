import type { Graph, GraphNode, LayerSpec, WeightMap } from '../../src/models/graph.js';
import { INPUT, inferShapes, paramShapes, weightKey } from '../../src/models/graph.js';
import { makeRng } from '../../src/util/rng.js';
import * as tf from '@tensorflow/tfjs-core';
import { forward } from '../../src/models/tf-interpreter.js';
import { toParams } from '../../src/train/evaluate.js';

/**
 * Tiny graphs with random (seeded) weights for the HE tests: small enough that encrypting,
 * evaluating and decrypting takes seconds, varied enough to exercise every supported layer.
 */

export function chain(inputShape: number[], classes: number, layers: [string, LayerSpec][]): Graph {
  const nodes: GraphNode[] = [];
  let prev = INPUT;
  for (const [name, layer] of layers) {
    nodes.push({ name, layer, inputs: [prev] });
    prev = name;
  }
  return { inputShape, classes, nodes, output: prev };
}

export const quad: LayerSpec = { op: 'activation', activation: { kind: 'quad' } };

export function tinyMlp(): Graph {
  return chain([6], 3, [
    ['dense1', { op: 'dense', units: 5, bias: true }],
    ['act1', quad],
    ['dense2', { op: 'dense', units: 4, bias: true }],
    ['act2', quad],
    ['dense3', { op: 'dense', units: 3, bias: true }],
  ]);
}

/** conv1 (2 filters) takes the direct batch path, conv2 (4 filters) the Winograd one. */
export function tinyCnn(): Graph {
  return chain([6, 6, 1], 3, [
    ['conv1', { op: 'conv2d', filters: 2, kernel: 3, stride: 1, padding: 'same', bias: true }],
    ['act1', quad],
    ['avgpool1', { op: 'avgpool', size: 2, stride: 2 }],
    ['conv2', { op: 'conv2d', filters: 4, kernel: 3, stride: 1, padding: 'same', bias: true }],
    ['act2', quad],
    ['avgpool2', { op: 'avgpool', size: 2, stride: 2 }],
    ['flatten1', { op: 'flatten' }],
    ['dense1', { op: 'dense', units: 3, bias: true }],
  ]);
}

/**
 * Random weights: kernels ~ U(-l, l) with Glorot-like l, quads with a in [0.05, 0.3], b near
 * 1, batchnorm statistics away from the identity so folding it is actually tested.
 */
export function randomWeights(graph: Graph, seed: number): WeightMap {
  const shapes = inferShapes(graph);
  const rng = makeRng(seed, 'he-test-weights');
  const u = (a: number, b: number) => a + (b - a) * rng.next();
  const weights: WeightMap = new Map();
  for (const node of graph.nodes) {
    const ps = paramShapes(node, shapes.get(node.inputs[0])!);
    for (const [param, shape] of Object.entries(ps)) {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      if (param === 'kernel') {
        const fanIn = shape.slice(0, -1).reduce((a, b) => a * b, 1);
        const l = Math.sqrt(3 / fanIn);
        for (let i = 0; i < n; i++) data[i] = u(-l, l);
      } else if (param === 'bias' || param === 'beta' || param === 'moving_mean') {
        for (let i = 0; i < n; i++) data[i] = u(-0.3, 0.3);
      } else if (param === 'gamma') {
        for (let i = 0; i < n; i++) data[i] = u(0.7, 1.3);
      } else if (param === 'moving_variance') {
        for (let i = 0; i < n; i++) data[i] = u(0.5, 2);
      } else if (param === 'coeffs') {
        for (let i = 0; i < n; i++) data[i] = i === 0 ? u(-0.2, 0.2) : i === 1 ? u(0.6, 1.2) : i === 2 ? u(0.05, 0.3) : u(-0.05, 0.05);
      }
      weights.set(weightKey(node.name, param), { shape, data });
    }
  }
  return weights;
}

export function randomInputs(graph: Graph, count: number, seed: number, lo = -1, hi = 1): Float32Array {
  const per = graph.inputShape.reduce((a, b) => a * b, 1);
  const rng = makeRng(seed, 'he-test-inputs');
  return Float32Array.from({ length: per * count }, () => lo + (hi - lo) * rng.next());
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

export function argmaxRows(logits: ArrayLike<number>, classes: number): number[] {
  const out: number[] = [];
  for (let s = 0; s < logits.length / classes; s++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[s * classes + c] > logits[s * classes + best]) best = c;
    out.push(best);
  }
  return out;
}

/** The trainer's tfjs interpreter: what "plaintext" means in the report. */
export function plaintextLogits(g: Graph, w: WeightMap, x: Float32Array, count: number): Float32Array {
  const params = toParams(w);
  try {
    return tf.tidy(() => forward(g, params, tf.tensor(x, [count, ...g.inputShape]), { training: false }).logits.dataSync() as Float32Array);
  } finally {
    for (const t of params.values()) t.dispose();
  }
}
