import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import { RecipeSchema, type TransformerConfig } from '../../src/recipe/schema.js';
import { buildGraph } from '../../src/models/build.js';
import type { Graph, WeightMap } from '../../src/models/graph.js';
import { forward, initWeights } from '../../src/models/tf-interpreter.js';
import { SimBackend, type SimCt } from '../../src/he/sim-backend.js';
import { HeOps } from '../../src/he/transformer/ops.js';
import { encodeInputs, evaluateSequenceModel, isSequenceGraph } from '../../src/he/transformer/evaluator.js';
import { fitInvSqrt, fitReciprocal, invSqrtApprox, reciprocalApprox } from '../../src/layers/reciprocal.js';
import type { Ranges } from '../../src/train/checkpoint.js';
import { RangeAccumulator } from '../../src/train/ranges.js';
import { makeRng } from '../../src/util/rng.js';
import { expectAllClose } from '../helpers/close.js';

/** Simulated CKKS (float64 with the real levels, scales and noise model): 40-bit primes = scale. */
const sim = (levels: number) => new SimBackend({ polyModulusDegree: 256, coeffModulusBits: [60, ...new Array<number>(levels).fill(40), 60], scaleBits: 40 }, { noise: true, seed: 3 });

const model = (m: Record<string, unknown>) => RecipeSchema.parse({ name: 't', data: { source: 'csv', path: 'x', label: 'y' }, model: { kind: 'transformer', ...m } }).model as TransformerConfig;

/** A few Adam steps on random data (so the weights are not the initial ones), then the ranges. */
function trainTiny(graph: Graph, x: tf.Tensor, labels: number[], steps: number): { weights: WeightMap; ranges: Ranges } {
  const init = initWeights(graph, 5);
  const vars = new Map([...init].map(([k, w]) => [k, tf.variable(tf.tensor(w.data, w.shape), true, `he-${graph.inputShape.join('x')}-${k}`)]));
  const y = tf.oneHot(tf.tensor1d(labels, 'int32'), graph.classes);
  const opt: tf.Optimizer = tf.train.adam(0.01);
  for (let i = 0; i < steps; i++) {
    const { grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, forward(graph, vars, x, { training: true }).logits) as tf.Scalar);
    opt.applyGradients(grads);
  }
  const weights: WeightMap = new Map([...vars].map(([k, v]) => [k, { shape: v.shape.slice(), data: Float32Array.from(v.dataSync()) }]));
  const r = forward(graph, vars, x, { training: false, recordActivationInputs: true });
  const activations: Record<string, ReturnType<RangeAccumulator['result']>> = {};
  for (const [k, t] of r.activationInputs) {
    const acc = new RangeAccumulator();
    acc.add(t);
    activations[k] = acc.result();
  }
  const inp = new RangeAccumulator();
  inp.add(x);
  for (const v of vars.values()) v.dispose();
  return { weights, ranges: { input: inp.result(), activations } };
}

function simulatedLogits(graph: Graph, weights: WeightMap, ranges: Ranges, x: Float32Array, count: number, levels: number) {
  const be = sim(levels);
  const enc = encodeInputs(graph, x, count);
  const cts = enc.values.map((v) => be.encryptInput(v));
  const { output, report } = evaluateSequenceModel(be, graph, weights, ranges, cts);
  const logits = new Float64Array(count * graph.classes);
  output.forEach((c: SimCt, j) => {
    for (let s = 0; s < count; s++) logits[s * graph.classes + j] = c.v[s];
  });
  return { logits, report };
}

const argmax = (v: ArrayLike<number>, C: number, s: number) => {
  let b = 0;
  for (let c = 1; c < C; c++) if (v[s * C + c] > v[s * C + b]) b = c;
  return b;
};

describe('transformer under (simulated) CKKS', function () {
  this.timeout(120000);
  before(async () => {
    await tf.setBackend('cpu');
  });

  it('simulated-ciphertext reciprocal and inverse square root match their plaintext Newton references', () => {
    const be = sim(30);
    const ops = new HeOps(be);
    const a = Float64Array.from({ length: be.slots }, (_, i) => 0.5 + (49.5 * i) / (be.slots - 1));
    const f = fitReciprocal(0.5, 50, 7);
    const r = ops.reciprocal(be.encryptInput(a), f);
    expect(be.topLevel - be.levelOf(r)).to.equal(1 + 2 * 7);
    expectAllClose(r.v, Array.from(a, (v) => reciprocalApprox(v, f)), { atol: 1e-6, rtol: 1e-5 });
    expectAllClose(r.v, Array.from(a, (v) => 1 / v), { rtol: f.errorBound * 1.01, atol: 1e-6 });
    const g = fitInvSqrt(0.1, 10, 5);
    const b = Float64Array.from({ length: be.slots }, (_, i) => 0.1 + (9.9 * i) / (be.slots - 1));
    const q = ops.invSqrt(be.encryptInput(b), g);
    expect(be.topLevel - be.levelOf(q)).to.equal(1 + 2 * 5);
    expectAllClose(q.v, Array.from(b, (v) => invSqrtApprox(v, g)), { atol: 1e-6, rtol: 1e-5 });
  });

  it('a tiny character LM (power-softmax, batchnorm, quad) trained a few steps: simulated-CKKS logits agree with plaintext', () => {
    const graph = buildGraph(model({ task: 'lm', layers: 1, dim: 4, heads: 2, mlp_ratio: 1, attention: { kind: 'power-softmax', p: 2 }, norm: 'batchnorm' }), [4], 5);
    expect(isSequenceGraph(graph)).to.equal(true);
    const rng = makeRng(1, 'he-lm');
    const N = 24;
    const xs = Float32Array.from({ length: N * 4 }, () => rng.int(5));
    const x = tf.tensor2d(xs, [N, 4]);
    const { weights, ranges } = trainTiny(graph, x, Array.from({ length: N }, (_, i) => xs[i * 4 + 3] % 5), 6);
    expect(ranges.activations['b1_attn/denominator'].min).to.be.above(0);
    const plain = tf.tidy(() => forward(graph, new Map([...weights].map(([k, w]) => [k, tf.tensor(w.data, w.shape)])), x, { training: false }).logits.dataSync());
    const { logits, report } = simulatedLogits(graph, weights, ranges, xs, N, 100);
    expectAllClose(logits, plain, { atol: 2e-3, rtol: 2e-3 }, 'simulated vs plaintext logits');
    let agree = 0;
    for (let s = 0; s < N; s++) if (argmax(logits, 5, s) === argmax(plain, 5, s)) agree++;
    expect(agree).to.equal(N);
    expect(report.reciprocals).to.have.length(1);
    expect(report.levelsUsed).to.equal(Object.values(report.nodeLevels).reduce((a, b) => Math.max(a, b), 0));
    expect(report.ms.reciprocal).to.be.above(0);
    expect(report.ctCtMults).to.be.above(0);
  });

  it('a tiny ViT with poly-layernorm: simulated-CKKS logits agree with plaintext', () => {
    const graph = buildGraph(
      model({ task: 'classify', patch: 2, layers: 1, dim: 4, heads: 1, mlp_ratio: 1, attention: { kind: 'power-softmax', p: 2 }, norm: { kind: 'poly-layernorm', range: [0.01, 10], iterations: 6 }, final_norm: false }),
      [4, 4, 1],
      3,
    );
    const rng = makeRng(2, 'he-vit');
    const N = 12;
    const xs = Float32Array.from({ length: N * 16 }, () => rng.next());
    const x = tf.tensor4d(xs, [N, 4, 4, 1]);
    const { weights, ranges } = trainTiny(graph, x, Array.from({ length: N }, (_, i) => i % 3), 4);
    const plain = tf.tidy(() => forward(graph, new Map([...weights].map(([k, w]) => [k, tf.tensor(w.data, w.shape)])), x, { training: false }).logits.dataSync());
    const { logits, report } = simulatedLogits(graph, weights, ranges, xs, N, 100);
    // the depth the evaluator reports is the one the ciphertexts show
    expect(report.levelsUsed).to.equal(report.nodeLevels.logits);
    expect(report.reciprocals[0].errorBound).to.be.below(1e-3);
    expectAllClose(logits, plain, { atol: 2e-3, rtol: 2e-3 }, 'simulated vs plaintext logits');
  });

  it('softmax attention and exact layernorm are refused with the fix', () => {
    const graph = buildGraph(model({ task: 'lm', layers: 1, dim: 4, heads: 2, attention: { kind: 'softmax' }, norm: 'batchnorm' }), [4], 5);
    const weights = initWeights(graph, 1);
    const be = sim(30);
    const enc = encodeInputs(graph, new Float32Array(4), 1);
    expect(() => evaluateSequenceModel(be, graph, weights, null, enc.values.map((v) => be.encryptInput(v)))).to.throw(/softmax attention is not polynomial; train with attention: \{kind: power-softmax\}/);
  });
});
