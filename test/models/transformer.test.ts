import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { RecipeSchema, type TransformerConfig } from '../../src/recipe/schema.js';
import { buildGraph } from '../../src/models/build.js';
import { countParams, inferShapes, isPolynomial, layerOf, type SequenceLayerSpec } from '../../src/models/graph.js';
import { forward, initWeights, type ParamMap } from '../../src/models/tf-interpreter.js';
import { sequenceForward } from '../../src/models/sequence-ops.js';
import { sequenceOpDepth } from '../../src/models/transformer.js';
import { powerSoftmax } from '../../src/layers/power-softmax.js';
import { hepoly } from '../helpers/cli.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { validate } from '../../src/he/validate.js';
import { tempDir } from '../helpers/tmp.js';
import { expectAllClose } from '../helpers/close.js';

const model = (m: Record<string, unknown>) => RecipeSchema.parse({ name: 't', data: { source: 'csv', path: 'x', label: 'y' }, model: { kind: 'transformer', ...m } }).model as TransformerConfig;

/** Plain-number multi-head attention on one sample x [T, D] (row-major), the reference. */
function attentionRef(x: number[][], qkv: number[][], qkvB: number[], out: number[][], outB: number[], heads: number, norm: (s: number[]) => number[]): number[][] {
  const T = x.length;
  const D = x[0].length;
  const dh = D / heads;
  const proj = x.map((row) => Array.from({ length: 3 * D }, (_, j) => qkvB[j] + row.reduce((a, v, i) => a + v * qkv[i][j], 0)));
  const ctx = Array.from({ length: T }, () => new Array<number>(D).fill(0));
  for (let h = 0; h < heads; h++) {
    for (let t = 0; t < T; t++) {
      const s = Array.from({ length: T }, (_, u) => {
        let dot = 0;
        for (let c = 0; c < dh; c++) dot += proj[t][h * dh + c] * proj[u][D + h * dh + c];
        return dot / Math.sqrt(dh);
      });
      const w = norm(s);
      for (let u = 0; u < T; u++) for (let c = 0; c < dh; c++) ctx[t][h * dh + c] += w[u] * proj[u][2 * D + h * dh + c];
    }
  }
  return ctx.map((row) => Array.from({ length: D }, (_, j) => outB[j] + row.reduce((a, v, i) => a + v * out[i][j], 0)));
}

describe('transformer (plaintext)', function () {
  this.timeout(120000);
  before(async () => {
    await tf.setBackend('cpu');
  });

  it('builds a ViT graph: 7x7 patches -> 16 tokens, shapes and parameter count', () => {
    const g = buildGraph(model({ layers: 2, dim: 32, heads: 4, mlp_ratio: 2, patch: 7 }), [28, 28, 1], 10);
    const shapes = inferShapes(g);
    expect(shapes.get('patches')).to.deep.equal([16, 49]);
    expect(shapes.get('embed')).to.deep.equal([16, 32]);
    expect(shapes.get('b2_attn')).to.deep.equal([16, 32]);
    expect(shapes.get('b1_mlp1')).to.deep.equal([16, 64]);
    expect(shapes.get('pool')).to.deep.equal([32]);
    expect(shapes.get('logits')).to.deep.equal([10]);
    const D = 32;
    const block = 3 * D * D + 3 * D + D * D + D + (D * 2 * D + 2 * D) + (2 * D * D + D) + 2 * 4 * D + 3; // attn, mlp, 2 batchnorms, quad
    expect(countParams(g)).to.equal(49 * D + D + 16 * D + 2 * block + 4 * D + D * 10 + 10);
    // power-softmax attention and the quad are polynomial: the shared HE compiler lowers every layer
    expect(g.nodes.filter((n) => !isPolynomial(n.layer)).map((n) => n.name)).to.deep.equal([]);
  });

  it('builds a language model; wrong task / context / patch are clear errors', () => {
    const g = buildGraph(model({ task: 'lm', dim: 16, heads: 2, layers: 1 }), [8], 30);
    expect(inferShapes(g).get('embed')).to.deep.equal([8, 16]);
    expect(g.nodes.find((n) => n.name === 'pool')!.layer).to.deep.equal({ op: 'seq_pool', mode: 'last' });
    expect(() => buildGraph(model({ task: 'lm', context: 16 }), [8], 30, 'r.yaml')).to.throw(/r\.yaml: model\.context: the model's context is 16 characters but the data gives windows of 8/);
    expect(() => buildGraph(model({ task: 'classify' }), [8], 30, 'r.yaml')).to.throw(/model\.task: .*set model\.task: lm/);
    expect(() => buildGraph(model({ patch: 5 }), [28, 28, 1], 10, 'r.yaml')).to.throw(/model\.patch: patches of 5x5 do not tile the 28x28 images/);
    expect(() => buildGraph(model({ dim: 30, heads: 4 }), [28, 28, 1], 10, 'r.yaml')).to.throw(/model\.heads: dim 30 is not divisible by 4 heads/);
    expect(() => model({ attention: { kind: 'power-softmax', p: 3 } })).to.throw(/even integer/);
  });

  for (const kind of ['power-softmax', 'softmax'] as const) {
    it(`attention (${kind}) matches a plain-number reference`, () => {
      const T = 3;
      const D = 4;
      const rnd = (() => {
        let s = 7;
        return () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1;
      })();
      const mat = (r: number, c: number) => Array.from({ length: r }, () => Array.from({ length: c }, rnd));
      const x = mat(T, D);
      const qkv = mat(D, 3 * D);
      const qkvB = mat(1, 3 * D)[0];
      const out = mat(D, D);
      const outB = mat(1, D)[0];
      const spec: SequenceLayerSpec = { op: 'attention', heads: 2, attention: kind === 'softmax' ? { kind } : { kind, p: 2, eps: 1e-3 } };
      const w: Record<string, tf.Tensor> = { qkv_kernel: tf.tensor2d(qkv), qkv_bias: tf.tensor1d(qkvB), out_kernel: tf.tensor2d(out), out_bias: tf.tensor1d(outB) };
      const probes = new Map<string, tf.Tensor>();
      const y = sequenceForward(spec, [tf.tensor3d([x])], (p) => w[p], (k, t) => probes.set(k, t));
      const norm =
        kind === 'softmax'
          ? (s: number[]) => {
              const m = Math.max(...s);
              const e = s.map((v) => Math.exp(v - m));
              const z = e.reduce((a, b) => a + b, 0);
              return e.map((v) => v / z);
            }
          : (s: number[]) => Array.from(powerSoftmax(s, 2, 1e-3).y);
      expectAllClose(y.dataSync(), attentionRef(x, qkv, qkvB, out, outB, 2, norm).flat(), { atol: 1e-5, rtol: 1e-4 });
      if (kind === 'power-softmax') expect(probes.get('denominator')!.shape).to.deep.equal([1, 2, 3, 1]);
      else expect(probes.size).to.equal(0);
    });
  }

  it('patchify orders patches row-major, each flattened (h, w, c); embedding is a table lookup', () => {
    const img = tf.tensor4d(Array.from({ length: 16 }, (_, i) => i), [1, 4, 4, 1]);
    const p = sequenceForward({ op: 'patchify', size: 2 }, [img], () => tf.scalar(0), null);
    expect(p.shape).to.deep.equal([1, 4, 4]);
    expect(Array.from(p.dataSync())).to.deep.equal([0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]);
    const table = tf.tensor2d([
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    const e = sequenceForward({ op: 'embedding', vocab: 3, dim: 2 }, [tf.tensor2d([[2, 0, 1]])], () => table, null);
    expect(Array.from(e.dataSync())).to.deep.equal([5, 6, 1, 2, 3, 4]);
  });

  it('forward records the power-softmax denominator and the norm variance as range probes; HE depth per component', () => {
    const g = buildGraph(model({ task: 'lm', dim: 8, heads: 2, layers: 1, norm: 'poly-layernorm' }), [6], 12);
    const params: ParamMap = new Map([...initWeights(g, 3)].map(([k, w]) => [k, tf.tensor(w.data, w.shape)]));
    const x = tf.tensor2d([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]]);
    const r = forward(g, params, x, { training: false, recordActivationInputs: true });
    expect(r.logits.shape).to.deep.equal([2, 12]);
    expect([...r.rangeProbes.keys()].sort()).to.deep.equal(['b1_attn/denominator', 'b1_norm1/variance', 'b1_norm2/variance', 'final_norm/variance']);
    expect(r.activationInputs.has('b1_attn/denominator')).to.equal(true);
    const attn = layerOf(g.nodes.find((n) => n.name === 'b1_attn')!) as SequenceLayerSpec;
    // denominator in [0.5, 50]: start error 0.9245, 0.9245^(2^7) < 1e-3 -> 7 steps; Goldschmidt
    // division: 1 level (d = den y0) + 1 per step + 1 (num y) = 9 (Newton took 15 and 1 more for num)
    const d = sequenceOpDepth(attn, { min: 0.5, max: 50 })!;
    expect(d.parts).to.deep.equal({ qkv: 1, scores: 1, power: 1, division: 9, output: 1 });
    expect(d.levels).to.equal(13);
    const ln = layerOf(g.nodes.find((n) => n.name === 'b1_norm1')!) as SequenceLayerSpec;
    expect(sequenceOpDepth(ln)!.levels).to.equal(2 + 11);
  });

  it('a tiny ViT trains a few steps (gradients reach every weight)', () => {
    const g = buildGraph(model({ dim: 8, heads: 2, layers: 1, patch: 7 }), [28, 28, 1], 3);
    const init = initWeights(g, 1);
    const vars = new Map([...init].map(([k, w]) => [k, tf.variable(tf.tensor(w.data, w.shape), true, `vit-${k}`)]));
    const x = tf.randomUniform([6, 28, 28, 1], 0, 1, 'float32', 1);
    const y = tf.oneHot(tf.tensor1d([0, 1, 2, 0, 1, 2], 'int32'), 3);
    const opt: tf.Optimizer = tf.train.adam(0.01);
    const losses: number[] = [];
    for (let i = 0; i < 8; i++) {
      const { value, grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, forward(g, vars, x, { training: true }).logits) as tf.Scalar);
      const moving = Object.entries(grads).filter(([, t]) => tf.max(tf.abs(t)).dataSync()[0] > 0).length;
      if (i === 0) expect(moving).to.be.at.least(Object.keys(grads).length - 2); // the last bn beta may start at zero gradient only in rare cases
      opt.applyGradients(grads);
      losses.push(value.dataSync()[0]);
    }
    expect(losses[losses.length - 1]).to.be.below(losses[0]);
    for (const v of vars.values()) v.dispose();
  });
});

describe('transformer (end to end, CLI)', function () {
  this.timeout(300000);
  const tmp = tempDir();
  after(() => tmp.cleanup());
  const textFile = join(tmp.path, 'tiny.txt');
  writeFileSync(textFile, 'the cat sat on the mat. the dog sat on the log.\n'.repeat(40));
  const recipe = join(tmp.path, 'lm.yaml');
  writeFileSync(
    recipe,
    `name: tiny-lm
data: {source: text, path: ${JSON.stringify(textFile)}, context: 8, split: {validation: 0.1, test: 0.1}}
model: {kind: transformer, task: lm, layers: 1, dim: 16, heads: 2, mlp_ratio: 2, attention: {kind: power-softmax, p: 2}, norm: batchnorm}
train: {epochs: 2, batch: 64, optimizer: {kind: adam, lr: 0.01}}
`,
  );
  const out = join(tmp.path, 'ckpt');

  it('trains a tiny character LM, the checkpoint round-trips, ranges hold the denominators, sample generates', () => {
    const r = hepoly(['train', recipe, '--out', out, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json!.epochs).to.equal(2);
    const ranges = JSON.parse(readFileSync(join(out, 'ranges.json'), 'utf8'));
    expect(ranges.activations['b1_attn/denominator'].min).to.be.above(0);
    expect(ranges.activations).to.have.property('b1_act');
    const ev = hepoly(['eval', out, '--json']);
    expect(ev.code, ev.stderr).to.equal(0);
    expect(ev.json!.split).to.equal('test');
    expect(ev.json!.accuracy).to.be.closeTo(r.json!.test_accuracy as number, 1e-9);
    const s = hepoly(['sample', out, '--prompt', 'the cat', '--length', '30', '--seed', '3', '--json']);
    expect(s.code, s.stderr).to.equal(0);
    expect((s.json!.generated as string).length).to.equal(30);
    const again = hepoly(['sample', out, '--prompt', 'the cat', '--length', '30', '--seed', '3', '--json']);
    expect(again.json!.generated).to.equal(s.json!.generated);
  });

  it('model.attention.denominator trains the denominators into a narrower range: fewer division iterations under HE', () => {
    const before = JSON.parse(readFileSync(join(out, 'ranges.json'), 'utf8')).activations['b1_attn/denominator'];
    const mid = Math.sqrt(before.min * before.max);
    const narrow = join(tmp.path, 'ckpt-narrow');
    const r = hepoly(['train', recipe, '--out', narrow, '--set', `model.attention.denominator.range=[${mid / 3}, ${mid * 3}]`, '--set', 'model.attention.denominator.weight=1', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const after = JSON.parse(readFileSync(join(narrow, 'ranges.json'), 'utf8')).activations['b1_attn/denominator'];
    expect(after.max / after.min, `recorded [${after.min}, ${after.max}] against [${before.min}, ${before.max}] without`).to.be.below(before.max / before.min / 4);
    const attn = layerOf(loadCheckpoint(narrow).graph.nodes.find((n) => n.name === 'b1_attn')!) as SequenceLayerSpec;
    expect(sequenceOpDepth(attn, after)!.parts.division).to.be.below(sequenceOpDepth(attn, before)!.parts.division);
  });

  it('the trained LM checkpoint agrees under (simulated) CKKS: next-character agreement, per-layer error, levels', async () => {
    await tf.setBackend('cpu');
    // a fixed N=8192 chain (--params auto could pick an uncut N=32768, slow to simulate)
    const params = join(tmp.path, 'refresh-params.json');
    writeFileSync(params, JSON.stringify({ poly_modulus_degree: 8192, coeff_modulus_bits: [44, 30, 30, 30, 30, 44], scale_bits: 30 }));
    // --trace reads batch packing's layout (token packing, the default, says so and skips it)
    const v = await validate({ checkpoint: out, samples: 8, params, trace: true, packing: 'batch', mode: 'simulate', refresh: 'client' });
    expect(v.samples).to.equal(8);
    expect(v.packing).to.equal('batch');
    expect(v.agreement).to.equal(1);
    expect(v.maxAbsError).to.be.below(1e-2);
    const traced = v.layerErrors!.map((l) => l.label);
    expect(traced.some((l) => l.includes('b1_attn')), traced.join(', ')).to.equal(true);
    expect(v.layerErrors!.every((l) => l.maxAbsError < 1e-2)).to.equal(true);
    // the program's depth includes the attention's, division included
    const ckpt = loadCheckpoint(out);
    const attn = layerOf(ckpt.graph.nodes.find((n) => n.name === 'b1_attn')!) as SequenceLayerSpec;
    expect(v.depth).to.be.at.least(sequenceOpDepth(attn, ckpt.ranges!.activations['b1_attn/denominator'])!.levels);
  });

  it('distils from a transformer teacher (the softmax-twin path)', () => {
    const r = hepoly(['train', recipe, '--set', 'train.epochs=1', '--set', `distill.teacher=${out}`, '--out', join(tmp.path, 'student'), '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/distilling from hepoly checkpoint/);
  });

  it('sample: a prompt longer than the context, or with characters outside the vocabulary, is refused', () => {
    const long = hepoly(['sample', out, '--prompt', 'the cat sat on']);
    expect(long.code).to.equal(2);
    expect(long.stderr).to.match(/^error: --prompt: the prompt has 14 characters, more than the model's context of 8/);
    const bad = hepoly(['sample', out, '--prompt', 'the CAT']);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.match(/^error: --prompt: character "C" \(position 5\) is not in the model's vocabulary/);
  });

  it('odd p and characters outside data.vocab end in clear messages', () => {
    const odd = hepoly(['train', recipe, '--set', 'model.attention.p=3', '--out', join(tmp.path, 'odd')]);
    expect(odd.code).to.equal(1);
    expect(odd.stderr).to.match(/^error: .*model\.attention\.p.*p must be an even integer/);
    const voc = hepoly(['train', recipe, '--set', 'data.vocab=the cas', '--out', join(tmp.path, 'voc')]);
    expect(voc.code).to.equal(1);
    expect(voc.stderr).to.match(/^error: .*tiny\.txt:1:13: character "o" \(U\+006F\) is not in the vocabulary/);
    expect(existsSync(join(tmp.path, 'voc'))).to.equal(false);
  });
});
