import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core alone registers no gradient functions; the union package's node bundle does
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { registerWasmGradientKernels } from '../../src/train/kernels/wasm-grad-kernels.js';
import { type Graph, type LayerSpec, inferShapes, paramShapes, weightKey } from '../../src/models/graph.js';
import { groupedConv2d } from '../../src/ops/conv2d.js';
import { getOp } from '../../src/ops/registry.js';
import { predict } from '../../src/models/tf-interpreter.js';
import { graphPredict } from '../../src/he/reference.js';
import { compileProgram } from '../../src/he/compile.js';
import { buildGraph } from '../../src/models/build.js';
import { summarize } from '../../src/models/summary.js';
import { ModelSchema } from '../../src/recipe/schema.js';
import { pruneWeights } from '../../src/train/prune.js';
import { HepolyError } from '../../src/util/errors.js';
import { TEST_PARAMS } from '../he/pipeline.js';
import { type PackingName, encryptedPass, releaseSharedSeal } from '../he/encrypted-pass.js';
import { chain, quad, randomInputs, randomWeights } from '../he/fixtures.js';
import { expectAllClose } from '../helpers/close.js';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Grouped and depthwise convolution ({type: conv, groups: G}): the op registry's proof. The
 * forward is checked against the formula written out here, the gradients on wasm against
 * tfjs cpu, and the compiled program under real SEAL encryption in every packing against
 * the plaintext interpreter.
 */

/** y[oy,ox,co] = b[co] + sum over the taps and the input channels of co's group of x * w (TF 'same'/'valid'). */
function groupedConvByHand(x: number[], [H, W, C]: number[], w: number[], k: number, F: number, G: number, stride: number, padding: 'same' | 'valid'): number[] {
  const oh = padding === 'same' ? Math.ceil(H / stride) : Math.floor((H - k) / stride) + 1;
  const ow = padding === 'same' ? Math.ceil(W / stride) : Math.floor((W - k) / stride) + 1;
  const pt = padding === 'same' ? Math.floor(Math.max((oh - 1) * stride + k - H, 0) / 2) : 0;
  const pl = padding === 'same' ? Math.floor(Math.max((ow - 1) * stride + k - W, 0) / 2) : 0;
  const cinG = C / G;
  const coutG = F / G;
  const y = new Array(oh * ow * F).fill(0);
  for (let oy = 0; oy < oh; oy++)
    for (let ox = 0; ox < ow; ox++)
      for (let co = 0; co < F; co++) {
        const g = Math.floor(co / coutG);
        let s = 0;
        for (let ky = 0; ky < k; ky++)
          for (let kx = 0; kx < k; kx++) {
            const iy = oy * stride + ky - pt;
            const ix = ox * stride + kx - pl;
            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
            for (let j = 0; j < cinG; j++) s += x[(iy * W + ix) * C + g * cinG + j] * w[((ky * k + kx) * cinG + j) * F + co];
          }
        y[(oy * ow + ox) * F + co] = s;
      }
  return y;
}

const conv = (filters: number, groups: number, stride = 1, padding: 'same' | 'valid' = 'same'): LayerSpec => ({ op: 'conv2d', filters, kernel: 3, stride, padding, bias: true, groups });

/** (channels, filters, groups): grouped 1 < G < C, depthwise, depthwise with multiplier 2 */
const CASES: [number, number, number][] = [
  [4, 6, 2],
  [4, 4, 4],
  [3, 6, 3],
];

function rand(n: number, seed: number): number[] {
  let s = seed;
  return Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return (s / 2147483648) * 2 - 1;
  });
}

describe('ops/conv2d groups: grouped and depthwise convolution', function () {
  this.timeout(300000);

  before(async () => {
    registerWasmGradientKernels();
    expect(await tf.setBackend('wasm')).to.equal(true);
    await tf.ready();
    expect(await tf.setBackend('cpu')).to.equal(true);
  });

  it('kernel [k, k, cin/G, filters]; groups that do not divide channels and filters are refused in the recipe', () => {
    const g = chain([5, 5, 4], 3, [['conv1', conv(6, 2)]]);
    expect(paramShapes(g.nodes[0], [5, 5, 4]).kernel).to.deep.equal([3, 3, 2, 6]);
    expect(inferShapes(g).get('conv1')).to.deep.equal([5, 5, 6]);
    const model = (groups: number) => ModelSchema.parse({ kind: 'cnn', layers: [{ type: 'conv', filters: 4, groups }, { type: 'dense' }] });
    expect(() => buildGraph(model(3), [6, 6, 2], 3, 'r.yaml')).to.throw(HepolyError, /r\.yaml: model\.layers: layer conv1 \(conv2d\): groups 3 must divide the 2 input channels and the 4 filters/);
    const ok = buildGraph(model(2), [6, 6, 2], 3, 'r.yaml');
    expect(ok.nodes[0].layer).to.include({ op: 'conv2d', groups: 2 });
    // groups: 1 (or absent) keeps the graph of a plain conv, so old checkpoints read the same
    expect(buildGraph(model(1), [6, 6, 2], 3).nodes[0].layer).to.not.have.property('groups');
  });

  for (const [C, F, G] of CASES) {
    for (const [stride, padding] of [
      [1, 'same'],
      [2, 'valid'],
    ] as const) {
      it(`C=${C} F=${F} G=${G} stride ${stride} ${padding}: tfjs forward and the float64 reference equal the formula`, () => {
        const shape = [5, 5, C];
        const x = rand(25 * C, 7);
        const w = rand(9 * (C / G) * F, 11);
        const want = groupedConvByHand(x, shape, w, 3, F, G, stride, padding);
        const got = tf.tidy(() => groupedConv2d(tf.tensor4d(x, [1, ...shape] as [number, number, number, number]), tf.tensor4d(w, [3, 3, C / G, F]), stride, padding, G).dataSync());
        expectAllClose(got, want, { atol: 1e-5, rtol: 1e-5 }, 'tfjs');
        const ref = getOp('conv2d').referenceForward as (c: object) => Float64Array;
        const layer = { ...conv(F, G, stride, padding), bias: false };
        const r = ref({ layer, node: 'c', ins: [Float64Array.from(x)], inShapes: [shape], w: () => w });
        expectAllClose(r, want, { atol: 1e-9, rtol: 1e-9 }, 'float64 reference');
      });
    }

    it(`C=${C} F=${F} G=${G}: gradients on wasm equal tfjs cpu (input and kernel)`, async () => {
      const x = rand(2 * 6 * 6 * C, 3);
      const w = rand(9 * (C / G) * F, 5);
      const dy = rand(2 * 3 * 3 * F, 9);
      const grads = async (backend: string) => {
        await tf.setBackend(backend);
        return tf.tidy(() => {
          const f = (xt: tf.Tensor, wt: tf.Tensor) => tf.sum(tf.mul(groupedConv2d(xt as tf.Tensor4D, wt as tf.Tensor4D, 2, 'same', G), tf.tensor4d(dy, [2, 3, 3, F])));
          const [gx, gw] = tf.grads(f)([tf.tensor4d(x, [2, 6, 6, C]), tf.tensor4d(w, [3, 3, C / G, F])]);
          return [Float32Array.from(gx.dataSync()), Float32Array.from(gw.dataSync())];
        });
      };
      const want = await grads('cpu');
      const got = await grads('wasm');
      await tf.setBackend('cpu');
      expectAllClose(got[0], want[0], { atol: 1e-4, rtol: 1e-4 }, 'd/dx');
      expectAllClose(got[1], want[1], { atol: 1e-4, rtol: 1e-4 }, 'd/dkernel');
      expect(Math.max(...Array.from(want[1], Math.abs))).to.be.greaterThan(0.1);
    });
  }

  it('pruning refuses a grouped convolution by name', () => {
    const g = grouped(2);
    expect(() => pruneWeights(g, randomWeights(g, 1), { method: 'hepex', sparsity: 0.5, tile: 1, expand: false }, 'ckpt')).to.throw(HepolyError, /ckpt: layer conv2 is a grouped convolution \(2 groups\)/);
  });
});

/** conv (4 filters) -> quad -> grouped or depthwise conv -> quad -> flatten -> dense. */
function grouped(groups: number): Graph {
  return chain([6, 6, 2], 3, [
    ['conv1', { op: 'conv2d', filters: 4, kernel: 3, stride: 1, padding: 'same', bias: true }],
    ['act1', quad],
    ['conv2', conv(4, groups)],
    ['act2', quad],
    ['flatten1', { op: 'flatten' }],
    ['dense1', { op: 'dense', units: 3, bias: true }],
  ]);
}

describe('ops/conv2d groups under HE: real SEAL encryption, every packing agrees with plaintext', function () {
  this.timeout(600000);
  after(() => releaseSharedSeal());
  before(async () => {
    await tf.setBackend('cpu');
  });

  for (const [what, groups] of [
    ['grouped (2 groups)', 2],
    ['depthwise', 4],
  ] as const) {
    const g = grouped(groups);
    const w = randomWeights(g, 21);
    const x = randomInputs(g, 2, 22);
    it(`${what}: the compiled program spends the summary's levels and computes the float64 reference`, () => {
      const p = compileProgram(g, w);
      expect(p.depth).to.equal(summarize(g, null).he_depth).and.to.equal(5);
      expectAllClose(graphPredict(g, w, x, 2), predict(g, w, x, 2), { atol: 1e-4, rtol: 1e-4 }, 'float64 vs tfjs');
      const conv2 = p.steps.find((s) => s.kind === 'linear' && s.nodes.includes('conv2'));
      const op = conv2?.kind === 'linear' ? conv2.terms[0].op : null;
      expect(op?.kind === 'conv' && op.geom.groups).to.equal(groups);
      expect(w.get(weightKey('conv2', 'kernel'))!.shape).to.deep.equal([3, 3, 4 / groups, 4]);
    });
    for (const packing of ['batch', 'sample', 'interleaved:2', 'stacked:2'] as PackingName[]) {
      it(`${what}, ${packing}: decrypted logits agree with the tfjs interpreter`, async () => {
        const want = predict(g, w, x, 2);
        const got = await encryptedPass(compileProgram(g, w), packing, x, 2, TEST_PARAMS, 'seal');
        const scale = Math.max(1, ...Array.from(want, Math.abs));
        expectAllClose(got, want, { atol: 1e-2 * scale, rtol: 0 }, `${what}, ${packing}`);
      });
    }
  }
});

describe('ops/conv2d groups end to end (the built CLI): train on wasm, validate under SEAL', function () {
  this.timeout(600000);
  const tmp = tempDir();
  after(() => tmp.cleanup());

  it('a depthwise-separable CNN recipe trains on wasm and agrees under encryption', () => {
    const recipe = join(tmp.path, 'grouped.yaml');
    writeFileSync(
      recipe,
      [
        'name: grouped-cnn',
        'seed: 3',
        `data: {source: csv, path: ${join(process.cwd(), 'datasets/breast-cancer-wisconsin.csv')}, label: diagnosis, shape: [5, 6, 1], split: {validation: 0.2}}`,
        'model:',
        '  kind: cnn',
        '  layers:',
        // one activation keeps the depth within N=8192 (the grouped layers are what is tested)
        '    - {type: conv, filters: 4}',
        '    - {type: conv, filters: 4, groups: 4}',
        '    - {type: activation}',
        '    - {type: conv, filters: 4, kernel: 1, groups: 2}',
        '    - {type: dense}',
        'train: {epochs: 4, batch: 32, optimizer: {kind: adam, lr: 0.01}}',
      ].join('\n'),
    );
    const out = join(tmp.path, 'ckpt');
    const t = hepoly(['train', recipe, '--out', out, '--backend', 'wasm', '--json']);
    expect(t.code, t.stderr).to.equal(0);
    expect(t.json!.backend).to.equal('wasm');
    expect(t.json!.val_accuracy as number).to.be.greaterThan(0.85);
    const s = hepoly(['summary', out]);
    expect(s.stdout).to.match(/conv2 \(conv2d 4x3x3 s1 same g4\)/);
    const v = hepoly(['he-validate', out, '--samples', '4', '--packing', 'sample', '--json']);
    expect(v.code, v.stderr).to.equal(0);
    expect(v.json!.agreement).to.equal(1);
  });
});
