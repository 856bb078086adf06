import { expect } from 'chai';
import { initBackend } from '../../src/train/backend.js';
import { predict } from '../../src/models/tf-interpreter.js';
import { fitReluPolynomial } from '../../src/layers/relu-approx.js';
import { type Graph, type GraphNode, type LayerSpec, weightKey } from '../../src/models/graph.js';
import { compileProgram } from '../../src/he/compile.js';
import type { HeProgram } from '../../src/he/program.js';
import { HepolyError } from '../../src/util/errors.js';
import { chooseParams } from '../../src/he/params.js';
import { calibrate } from '../../src/he/validate.js';
import { type Engine, type PackingName, encryptedPass, releaseSharedSeal } from './encrypted-pass.js';
import { chain, quad, randomInputs, randomWeights } from './fixtures.js';
import { expectAllClose } from '../helpers/close.js';
import { restoreFastestBackend } from '../helpers/backend.js';

/**
 * Every op the HE evaluator supports, in every packing, on SEAL: a tiny graph per op (the op
 * with just enough around it to make logits), random weights, encrypted inputs, evaluation on
 * ciphertexts only, decryption, and a comparison with the tfjs interpreter, which shares no
 * code with the compiler or the evaluators. A packing that cannot run an op must refuse it
 * with a message that says so: those cells expect the refusal.
 */

type Expect = 'agrees' | { refused: RegExp };

interface Row {
  op: string;
  graph: Graph;
  /** default 'agrees' for every packing */
  expect?: Partial<Record<PackingName, Expect>>;
  /** also run on the simulator (the polynomials' mixed-level products) */
  sim?: boolean;
}

const PACKINGS: PackingName[] = ['batch', 'sample', 'stacked:2', 'interleaved:2'];
const SAMPLES = 2;

const act = (activation: Extract<LayerSpec, { op: 'activation' }>['activation']): LayerSpec => ({ op: 'activation', activation });
const square = act({ kind: 'square' });
const conv = (kernel: number, stride: number, padding: 'same' | 'valid', filters = 2): LayerSpec => ({ op: 'conv2d', filters, kernel, stride, padding, bias: true });
const dense = (units: number): LayerSpec => ({ op: 'dense', units, bias: true });
const bn: LayerSpec = { op: 'batchnorm', momentum: 0.9, epsilon: 1e-3 };
const flatten: LayerSpec = { op: 'flatten' };
/** 4x4x2 images keep batch packing (a ciphertext per pixel and channel) fast; valid stride-2 rows take 5x5 to keep a 2x2 output. */
const IMAGE = [4, 4, 2];

/** An activation between two dense layers of a vector network. */
function onVector(a: LayerSpec): Graph {
  return chain([6], 3, [
    ['dense1', dense(4)],
    ['act1', a],
    ['dense2', dense(3)],
  ]);
}

/** A convolution under test, then square, flatten and a classifier. */
function convRow(kernel: number, stride: number, padding: 'same' | 'valid', filters = 2, image = padding === 'valid' && stride === 2 ? [5, 5, 2] : IMAGE): Graph {
  return chain(image, 3, [
    ['conv1', conv(kernel, stride, padding, filters)],
    ['act1', square],
    ['flatten1', flatten],
    ['dense1', dense(3)],
  ]);
}

function residual(): Graph {
  const n = (name: string, layer: LayerSpec, ...inputs: string[]): GraphNode => ({ name, layer, inputs });
  // one input channel: the residual row is the deepest (5 levels), so the cheapest image
  return {
    inputShape: [4, 4, 1],
    classes: 3,
    output: 'dense1',
    nodes: [
      n('conv1', conv(3, 1, 'same'), 'input'),
      n('act1', quad, 'conv1'),
      n('conv2', conv(3, 1, 'same'), 'act1'),
      n('add1', { op: 'add' }, 'conv2', 'act1'),
      n('act2', quad, 'add1'),
      n('flatten1', flatten, 'act2'),
      n('dense1', dense(3), 'flatten1'),
    ],
  };
}

const ROWS: Row[] = [
  { op: 'dense', graph: chain([6], 3, [['dense1', dense(4)], ['act1', quad], ['dense2', dense(3)]]) },
  { op: 'conv same, stride 1, kernel 3', graph: convRow(3, 1, 'same') },
  { op: 'conv valid, stride 1, kernel 3', graph: convRow(3, 1, 'valid') },
  { op: 'conv same, stride 2, kernel 3', graph: convRow(3, 2, 'same') },
  { op: 'conv valid, stride 2, kernel 3', graph: convRow(3, 2, 'valid') },
  // batch packing takes Winograd F(2x2, 3x3) from 4 filters on: an odd 5x5 plane leaves partial tiles
  { op: 'conv same, stride 1, kernel 3, 4 filters (batch: Winograd), odd plane', graph: convRow(3, 1, 'same', 4, [5, 5, 1]) },
  { op: 'conv valid, stride 1, kernel 3, 4 filters (batch: Winograd)', graph: convRow(3, 1, 'valid', 4) },
  { op: 'conv same, stride 1, kernel 1', graph: convRow(1, 1, 'same') },
  { op: 'conv valid, stride 2, kernel 1', graph: convRow(1, 2, 'valid') },
  { op: 'activation quad', graph: onVector(quad) },
  { op: 'activation square', graph: onVector(square) },
  { op: 'activation poly degree 3', graph: onVector(act({ kind: 'poly', degree: 3 })), sim: true },
  { op: 'activation poly degree 4', graph: onVector(act({ kind: 'poly', degree: 4 })), sim: true },
  {
    op: 'activation poly degree 3 on an image',
    graph: chain(IMAGE, 3, [['conv1', conv(3, 1, 'same')], ['act1', act({ kind: 'poly', degree: 3 })], ['flatten1', flatten], ['dense1', dense(3)]]),
    sim: true,
  },
  { op: 'activation relu-approx degree 4', graph: onVector(act({ kind: 'relu-approx', degree: 4, range: [-4, 4], trainable: false })), sim: true },
  {
    op: 'avgpool',
    graph: chain(IMAGE, 3, [['conv1', conv(3, 1, 'same')], ['act1', square], ['pool1', { op: 'avgpool', size: 2, stride: 2 }], ['flatten1', flatten], ['dense1', dense(3)]]),
  },
  {
    op: 'global_avgpool',
    graph: chain(IMAGE, 3, [['conv1', conv(3, 1, 'same', 4)], ['act1', square], ['gap1', { op: 'global_avgpool' }], ['dense1', dense(3)]]),
  },
  {
    op: 'global_avgpool as the output',
    graph: chain(IMAGE, 3, [['conv1', conv(3, 1, 'same', 3)], ['act1', square], ['gap1', { op: 'global_avgpool' }]]),
  },
  {
    op: 'batchnorm (folded) after a conv',
    graph: chain(IMAGE, 3, [['conv1', conv(3, 1, 'same')], ['bn1', bn], ['act1', square], ['flatten1', flatten], ['dense1', dense(3)]]),
  },
  { op: 'batchnorm (folded) after a dense', graph: chain([6], 3, [['dense1', dense(4)], ['bn1', bn], ['act1', quad], ['dense2', dense(3)]]) },
  {
    op: 'pad (input)',
    graph: chain(IMAGE, 3, [['pad1', { op: 'pad', top: 1, bottom: 1, left: 1, right: 1 }], ['conv1', conv(3, 1, 'valid')], ['act1', square], ['flatten1', flatten], ['dense1', dense(3)]]),
  },
  {
    op: 'pad (after an activation)',
    graph: chain(IMAGE, 3, [['conv1', conv(3, 2, 'same')], ['act1', square], ['pad1', { op: 'pad', top: 1, bottom: 0, left: 0, right: 1 }], ['conv2', conv(3, 1, 'valid')], ['flatten1', flatten], ['dense1', dense(3)]]),
  },
  {
    op: 'pad after a quad (its constant folds past the zero border)',
    graph: chain(IMAGE, 3, [['conv1', conv(3, 1, 'same')], ['act1', quad], ['pad1', { op: 'pad', top: 1, bottom: 1, left: 1, right: 1 }], ['conv2', conv(3, 2, 'valid')], ['flatten1', flatten], ['dense1', dense(3)]]),
  },
  { op: 'flatten (of the input)', graph: chain(IMAGE, 3, [['flatten1', flatten], ['dense1', dense(4)], ['act1', quad], ['dense2', dense(3)]]) },
  { op: 'residual add', graph: residual() },
];

/**
 * relu-approx carries its least-squares fit (random coefficients would be a plain poly); a
 * poly's x^3 and x^4 get coefficients of 0.2-0.3, so that a wrong power (x^4 where x^3 was
 * due, a product at the wrong level) moves the logits well past the tolerance.
 */
function weightsFor(g: Graph, seed: number) {
  const w = randomWeights(g, seed);
  for (const node of g.nodes) {
    if (node.layer.op !== 'activation') continue;
    const a = node.layer.activation;
    if (a.kind === 'relu-approx') {
      w.set(weightKey(node.name, 'coeffs'), { shape: [a.degree + 1], data: Float32Array.from(fitReluPolynomial(a.degree, a.range)) });
    } else if (a.kind === 'poly') {
      const c = w.get(weightKey(node.name, 'coeffs'))!.data;
      for (let k = 3; k < c.length; k++) c[k] = k % 2 ? 0.3 : -0.2;
    }
  }
  return w;
}

/**
 * `--params auto` for the program's depth, with one headroom for every row (values up to
 * 2^10) so that rows of equal depth share parameters; the row's own values must fit it.
 */
const HEADROOM = 2 ** 10;
function paramsFor(p: HeProgram, x: Float32Array) {
  expect(calibrate(p, x, SAMPLES), 'largest value the parameters must hold').to.be.below(HEADROOM);
  return chooseParams({ depth: p.depth, maxAbs: HEADROOM });
}

async function runRow(row: Row, packing: PackingName, engine: Engine): Promise<{ got: Float64Array; want: Float32Array }> {
  const w = weightsFor(row.graph, 31);
  const x = randomInputs(row.graph, SAMPLES, 32);
  const p = compileProgram(row.graph, w);
  const got = await encryptedPass(p, packing, x, SAMPLES, paramsFor(p, x), engine);
  return { got, want: predict(row.graph, w, x, SAMPLES) };
}

/** The encrypted logits agree with tfjs to 1e-2 of the largest logit (at least 1e-2). */
async function expectAgrees(row: Row, packing: PackingName, engine: Engine): Promise<void> {
  const { got, want } = await runRow(row, packing, engine);
  const scale = Math.max(1, ...Array.from(want, Math.abs));
  expectAllClose(got, want, { atol: 1e-2 * scale, rtol: 0 }, `${row.op}, ${packing}, ${engine}`);
}

describe('he/ops x packings: every op in every packing on SEAL agrees with the tfjs interpreter (or is refused by name)', function () {
  // tests here force the cpu backend; later files in this mocha worker get the fastest back
  after(restoreFastestBackend);
  before(async () => {
    await initBackend('cpu');
  });
  after(() => releaseSharedSeal());

  for (const row of ROWS) {
    for (const packing of PACKINGS) {
      const want = row.expect?.[packing] ?? 'agrees';
      if (want === 'agrees') {
        it(`${row.op}, ${packing}: agrees`, async () => expectAgrees(row, packing, 'seal'));
      } else {
        it(`${row.op}, ${packing}: refused: ${want.refused.source}`, async () => {
          const err = await runRow(row, packing, 'seal').then(() => null, (e: unknown) => e);
          expect(err, 'expected a refusal').to.be.instanceOf(HepolyError);
          expect((err as Error).message).to.match(want.refused);
        });
      }
    }
    if (row.sim) {
      for (const packing of ['batch', 'sample'] as const) {
        it(`${row.op}, ${packing}, simulator: agrees`, async () => expectAgrees(row, packing, 'sim'));
      }
    }
  }
});
