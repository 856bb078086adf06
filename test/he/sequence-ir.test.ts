import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import { RecipeSchema, type TransformerConfig } from '../../src/recipe/schema.js';
import { buildGraph } from '../../src/models/build.js';
import type { Graph, WeightMap } from '../../src/models/graph.js';
import { forward, initWeights } from '../../src/models/tf-interpreter.js';
import { compileProgram } from '../../src/he/compile.js';
import { type HeProgram, encodeSample } from '../../src/he/program.js';
import { programForward } from '../../src/he/reference.js';
import type { HeParams } from '../../src/he/params.js';
import type { Ranges } from '../../src/train/checkpoint.js';
import { RangeAccumulator } from '../../src/train/ranges.js';
import { makeRng } from '../../src/util/rng.js';
import { expectAllClose } from '../helpers/close.js';
import { encryptedPass, releaseSharedSeal } from './encrypted-pass.js';
import { TEST_PARAMS } from './pipeline.js';

/**
 * Transformers on the shared program IR: attention, power-softmax's Newton reciprocal and
 * poly-layernorm's inverse square root lowered by their op files to `dot` steps, per-token
 * kernels and gathers. The program's float64 reference is checked against the plaintext
 * network, its depth against measured bounds, and the new kernels (dot with
 * signs, plaintext terms and bias; gather; per-token kernels) under real SEAL against the
 * program's float64 reference.
 */

const model = (m: Record<string, unknown>) => RecipeSchema.parse({ name: 't', data: { source: 'csv', path: 'x', label: 'y' }, model: { kind: 'transformer', ...m } }).model as TransformerConfig;

let trained = 0;

/** A few Adam steps on random data (weights away from their initial values), then the ranges. */
function trainTiny(graph: Graph, x: tf.Tensor, labels: number[], steps: number): { weights: WeightMap; ranges: Ranges } {
  const init = initWeights(graph, 5);
  trained++;
  const vars = new Map([...init].map(([k, w]) => [k, tf.variable(tf.tensor(w.data, w.shape), true, `seq-ir-${trained}-${k}`)]));
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

/** The program's float64 logits, sample by sample (the client's encoding first). */
function programLogits(p: HeProgram, xs: Float32Array, count: number): Float64Array {
  const per = xs.length / count;
  const out = new Float64Array(count * p.classes);
  for (let s = 0; s < count; s++) {
    const vals = programForward(p, encodeSample(p, xs.subarray(s * per, (s + 1) * per)));
    out.set(vals[p.output], s * p.classes);
  }
  return out;
}

/**
 * Depth bounds measured from the shared compiler on these seeded networks (2026-12-03; +1 each
 * since 12-07: the division iterates the rows, then multiplies the numerators once); the
 * hand-written transformer evaluator it replaced spent 39 and 61 levels on the same two.
 */
const MAX_DEPTH = { lm: 22, vit: 49 };

describe('transformers on the shared program IR', function () {
  this.timeout(120000);
  after(() => releaseSharedSeal());
  before(async () => {
    await tf.setBackend('cpu');
  });

  it('a tiny character LM compiles to dot steps; its program agrees with the plaintext network, in no more levels than measured', () => {
    const graph = buildGraph(model({ task: 'lm', layers: 1, dim: 4, heads: 2, mlp_ratio: 1, attention: { kind: 'power-softmax', p: 2 }, norm: 'batchnorm' }), [4], 5);
    const rng = makeRng(1, 'seq-ir-lm');
    const N = 16;
    const xs = Float32Array.from({ length: N * 4 }, () => rng.int(5));
    const x = tf.tensor2d(xs, [N, 4]);
    const { weights, ranges } = trainTiny(graph, x, Array.from({ length: N }, (_, i) => xs[i * 4 + 3] % 5), 6);
    const p = compileProgram(graph, weights, { ranges });
    expect(p.inputEncoding).to.deep.equal({ kind: 'one-hot', vocab: 5 });
    expect(p.steps.filter((s) => s.kind === 'dot').length).to.be.above(3);
    expectAllClose(programLogits(p, xs, N), plaintext(graph, weights, x), { atol: 2e-3, rtol: 2e-3 }, 'program vs plaintext logits');
    expect(p.depth).to.be.at.most(MAX_DEPTH.lm);
    x.dispose();
  });

  it('a tiny ViT with poly-layernorm (patches as a gather, Newton inverse square root): program vs plaintext, levels', () => {
    const graph = buildGraph(
      model({ task: 'classify', patch: 2, layers: 1, dim: 4, heads: 1, mlp_ratio: 1, attention: { kind: 'power-softmax', p: 2 }, norm: { kind: 'poly-layernorm', range: [0.01, 10], iterations: 6 }, final_norm: false }),
      [4, 4, 1],
      3,
    );
    const rng = makeRng(2, 'seq-ir-vit');
    const N = 8;
    const xs = Float32Array.from({ length: N * 16 }, () => rng.next());
    const x = tf.tensor4d(xs, [N, 4, 4, 1]);
    const { weights, ranges } = trainTiny(graph, x, Array.from({ length: N }, (_, i) => i % 3), 4);
    const p = compileProgram(graph, weights, { ranges });
    expect(p.steps.some((s) => s.kind === 'struct' && s.op.kind === 'gather')).to.equal(true);
    expectAllClose(programLogits(p, xs, N), plaintext(graph, weights, x), { atol: 2e-3, rtol: 2e-3 }, 'program vs plaintext logits');
    expect(p.depth).to.be.at.most(MAX_DEPTH.vit);
    x.dispose();
  });

  it('the tiny LM under simulated CKKS in batch packing (a chain as deep as the program): agreement with plaintext', async () => {
    const graph = buildGraph(model({ task: 'lm', layers: 1, dim: 4, heads: 2, mlp_ratio: 1, attention: { kind: 'power-softmax', p: 2 }, norm: 'batchnorm' }), [4], 5);
    const rng = makeRng(3, 'seq-ir-lm-sim');
    const N = 8;
    const xs = Float32Array.from({ length: N * 4 }, () => rng.int(5));
    const x = tf.tensor2d(xs, [N, 4]);
    const { weights, ranges } = trainTiny(graph, x, Array.from({ length: N }, (_, i) => xs[i * 4 + 3] % 5), 6);
    const p = compileProgram(graph, weights, { ranges });
    const encoded = Float32Array.from(Array.from({ length: N }, (_, s) => Array.from(encodeSample(p, xs.subarray(s * 4, (s + 1) * 4)))).flat());
    const params: HeParams = { polyModulusDegree: 4096, coeffModulusBits: [60, ...new Array<number>(p.depth).fill(40), 60], scaleBits: 40 };
    const logits = await encryptedPass(p, 'batch', encoded, N, params, 'sim');
    expectAllClose(logits, plaintext(graph, weights, x), { atol: 3e-3, rtol: 3e-3 }, 'simulated batch pass vs plaintext');
    x.dispose();
  });

  it('SEAL: a per-token kernel, a gather and dot steps (signs, a plaintext term, a bias, operands at two levels) agree with the float64 program', async () => {
    // input [2, 3] -> tokens [2, 2] (1 level) -> gather [4] -> dot with the input (2 levels)
    const kernel = Float64Array.from([0.5, -0.25, 0.75, 0.5, -0.5, 0.25]);
    const p: HeProgram = {
      inputShape: [2, 3],
      classes: 4,
      input: 0,
      output: 4,
      depth: 3,
      layers: [],
      tensors: [
        { id: 0, shape: [2, 3], depth: 0, label: 'input' },
        { id: 1, shape: [2, 2], depth: 1, label: 'tokens' },
        { id: 2, shape: [4], depth: 1, label: 'gathered' },
        { id: 3, shape: [4], depth: 2, label: 'dot' },
        { id: 4, shape: [4], depth: 3, label: 'out' },
      ],
      steps: [
        { kind: 'linear', out: 1, terms: [{ src: 0, op: { kind: 'tokens', tokens: 2, inSize: 3, units: 2, kernel } }], bias: Float64Array.from([0.1, 0, -0.2, 0.3]), nodes: ['t'] },
        { kind: 'struct', out: 2, src: 1, op: { kind: 'gather', shape: [4], index: Int32Array.from([3, 0, 2, 1]) }, bias: null, nodes: ['g'] },
        {
          kind: 'dot',
          out: 3,
          a: 2,
          b: 0,
          pairs: { out: Int32Array.from([0, 0, 1, 2, 3, 3]), a: Int32Array.from([0, 1, 1, 2, 3, 0]), b: Int32Array.from([0, 5, 2, 3, 4, 1]), sign: Int8Array.from([1, -1, 1, -1, 1, 1]) },
          terms: [{ src: 2, op: { kind: 'scale', factors: Float64Array.from([1.5, 0, -0.5, 2]) } }],
          bias: Float64Array.from([2, 0, -1, 0.5]),
          nodes: ['d'],
        },
        { kind: 'dot', out: 4, a: 3, b: 3, pairs: { out: Int32Array.from([0, 1, 2, 3]), a: Int32Array.from([0, 1, 2, 3]), b: Int32Array.from([0, 1, 2, 3]), sign: null }, terms: [], bias: null, nodes: ['sq'] },
      ],
    };
    const rng = makeRng(4, 'seq-ir-seal');
    const N = 3;
    const xs = Float32Array.from({ length: N * 6 }, () => rng.next() * 2 - 1);
    const want = new Float64Array(N * 4);
    for (let s = 0; s < N; s++) want.set(programForward(p, Float64Array.from(xs.subarray(s * 6, (s + 1) * 6)))[4], s * 4);
    const got = await encryptedPass(p, 'batch', xs, N, TEST_PARAMS, 'seal');
    expectAllClose(got, want, { atol: 1e-3, rtol: 1e-3 }, 'SEAL vs float64 program');
  });
});
