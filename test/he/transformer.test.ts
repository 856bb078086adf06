import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import { RecipeSchema, type TransformerConfig } from '../../src/recipe/schema.js';
import { buildGraph } from '../../src/models/build.js';
import { type Graph, type WeightMap, isSequenceGraph } from '../../src/models/graph.js';
import { forward, initWeights } from '../../src/models/tf-interpreter.js';
import { compileProgram } from '../../src/he/compile.js';
import { encodeSample } from '../../src/he/program.js';
import type { HeParams } from '../../src/he/params.js';
import type { Ranges } from '../../src/train/checkpoint.js';
import { RangeAccumulator } from '../../src/train/ranges.js';
import { makeRng } from '../../src/util/rng.js';
import { expectAllClose } from '../helpers/close.js';
import { encryptedPass } from './encrypted-pass.js';

/**
 * Tiny transformers through the shared compiler under simulated CKKS (float64 slots with the real
 * levels, scales and CKKS-sized noise), batch-packed as he-validate runs them: decrypted logits
 * against the plaintext network.
 */

const model = (m: Record<string, unknown>) => RecipeSchema.parse({ name: 't', data: { source: 'csv', path: 'x', label: 'y' }, model: { kind: 'transformer', ...m } }).model as TransformerConfig;

let trained = 0;

/** A few Adam steps on random data (so the weights are not the initial ones), then the ranges. */
function trainTiny(graph: Graph, x: tf.Tensor, labels: number[], steps: number): { weights: WeightMap; ranges: Ranges } {
  const init = initWeights(graph, 5);
  trained++;
  const vars = new Map([...init].map(([k, w]) => [k, tf.variable(tf.tensor(w.data, w.shape), true, `he-tr-${trained}-${k}`)]));
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

function plaintext(graph: Graph, weights: WeightMap, x: tf.Tensor): Float32Array {
  return tf.tidy(() => forward(graph, new Map([...weights].map(([k, w]) => [k, tf.tensor(w.data, w.shape)])), x, { training: false }).logits.dataSync() as Float32Array);
}

/** The compiled program, batch-packed on the simulator with a chain as deep as the program. */
async function simulatedLogits(graph: Graph, weights: WeightMap, ranges: Ranges, xs: Float32Array, count: number): Promise<Float64Array> {
  const p = compileProgram(graph, weights, { ranges });
  const per = xs.length / count;
  const encoded = Float32Array.from(Array.from({ length: count }, (_, s) => Array.from(encodeSample(p, xs.subarray(s * per, (s + 1) * per)))).flat());
  const params: HeParams = { polyModulusDegree: 4096, coeffModulusBits: [60, ...new Array<number>(p.depth).fill(40), 60], scaleBits: 40 };
  return encryptedPass(p, 'batch', encoded, count, params, 'sim');
}

const argmax = (v: ArrayLike<number>, C: number, s: number) => {
  let b = 0;
  for (let c = 1; c < C; c++) if (v[s * C + c] > v[s * C + b]) b = c;
  return b;
};

describe('transformer under (simulated) CKKS, through the shared compiler', function () {
  this.timeout(120000);
  before(async () => {
    await tf.setBackend('cpu');
  });

  it('a tiny character LM (power-softmax, batchnorm, quad) trained a few steps: simulated-CKKS logits agree with plaintext', async () => {
    const graph = buildGraph(model({ task: 'lm', layers: 1, dim: 4, heads: 2, mlp_ratio: 1, attention: { kind: 'power-softmax', p: 2 }, norm: 'batchnorm' }), [4], 5);
    expect(isSequenceGraph(graph)).to.equal(true);
    const rng = makeRng(1, 'he-lm');
    const N = 24;
    const xs = Float32Array.from({ length: N * 4 }, () => rng.int(5));
    const x = tf.tensor2d(xs, [N, 4]);
    const { weights, ranges } = trainTiny(graph, x, Array.from({ length: N }, (_, i) => xs[i * 4 + 3] % 5), 6);
    expect(ranges.activations['b1_attn/denominator'].min).to.be.above(0);
    const plain = plaintext(graph, weights, x);
    const logits = await simulatedLogits(graph, weights, ranges, xs, N);
    expectAllClose(logits, plain, { atol: 3e-3, rtol: 3e-3 }, 'simulated vs plaintext logits');
    let agree = 0;
    for (let s = 0; s < N; s++) if (argmax(logits, 5, s) === argmax(plain, 5, s)) agree++;
    expect(agree).to.equal(N);
    x.dispose();
  });

  it('a tiny ViT with poly-layernorm: simulated-CKKS logits agree with plaintext', async () => {
    const graph = buildGraph(
      model({ task: 'classify', patch: 2, layers: 1, dim: 4, heads: 1, mlp_ratio: 1, attention: { kind: 'power-softmax', p: 2 }, norm: { kind: 'poly-layernorm', range: [0.01, 10], iterations: 6 }, final_norm: false }),
      [4, 4, 1],
      3,
    );
    expect(isSequenceGraph(graph)).to.equal(true);
    const rng = makeRng(2, 'he-vit');
    const N = 12;
    const xs = Float32Array.from({ length: N * 16 }, () => rng.next());
    const x = tf.tensor4d(xs, [N, 4, 4, 1]);
    const { weights, ranges } = trainTiny(graph, x, Array.from({ length: N }, (_, i) => i % 3), 4);
    const logits = await simulatedLogits(graph, weights, ranges, xs, N);
    expectAllClose(logits, plaintext(graph, weights, x), { atol: 3e-3, rtol: 3e-3 }, 'simulated vs plaintext logits');
    x.dispose();
  });

  it("a ViT whose quad keeps its x term (a shift too large to complete the square): the residual through the embedding is not charged the MLP's levels", async () => {
    const graph = buildGraph(model({ task: 'classify', patch: 2, layers: 1, dim: 2, heads: 1, mlp_ratio: 1, attention: { kind: 'power-softmax', p: 2 }, norm: 'batchnorm' }), [4, 4, 1], 2);
    const rng = makeRng(3, 'he-vit-x-term');
    const N = 8;
    const xs = Float32Array.from({ length: N * 16 }, () => rng.next());
    const x = tf.tensor4d(xs, [N, 4, 4, 1]);
    const { weights, ranges } = trainTiny(graph, x, Array.from({ length: N }, (_, i) => i % 2), 3);
    // a = 0.005, b = 1: completing the square would shift by b / 2a = 100, past the compiler's limit
    weights.get('b1_act/coeffs')!.data.set([0, 1, 0.005]);
    const p = compileProgram(graph, weights, { ranges });
    const byNode = new Map(p.layers.map((l) => [l.node, l]));
    expect(byNode.get('b1_act')!.how).to.match(/x\^2 and x terms/);
    expect(byNode.get('embed')!.levels).to.equal(1);
    expect(byNode.get('b1_mlp2')!.levels).to.equal(1);
    const logits = await simulatedLogits(graph, weights, ranges, xs, N);
    expectAllClose(logits, plaintext(graph, weights, x), { atol: 3e-3, rtol: 3e-3 }, 'simulated vs plaintext logits');
    x.dispose();
  });

  it('softmax attention is refused, naming the layer', () => {
    const graph = buildGraph(model({ task: 'lm', layers: 1, dim: 4, heads: 2, attention: { kind: 'softmax' }, norm: 'batchnorm' }), [4], 5);
    expect(isSequenceGraph(graph)).to.equal(true);
    expect(() => compileProgram(graph, initWeights(graph, 1), { ranges: null })).to.throw(/layer b1_attn \(attention softmax\) is not a polynomial, so it cannot run on CKKS ciphertexts/);
  });
});
