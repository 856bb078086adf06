import { expect } from 'chai';
import { compileProgram } from '../../src/he/compile.js';
import type { HeProgram } from '../../src/he/program.js';
import { programForward } from '../../src/he/reference.js';
import { packBatch } from '../../src/he/packing/batch.js';
import { SampleEvaluator, packSample, planSample } from '../../src/he/packing/sample.js';
import { HepolyError } from '../../src/util/errors.js';
import { type DimOrder, ciphertextCount, packTiles, tileLayout, unpackTiles, batchTiles, interleavedTiles, sampleTiles, stackedTiles } from '../../src/he/tiles/tile-tensor.js';
import { type StackedProgram, stackForSlots, stackInputs, stackProgram, unstackOutputs } from '../../src/he/tiles/stacked.js';
import { passCost } from '../../src/he/tiles/cost.js';
import { type PassMeasurement, measurePass } from '../../src/he/tiles/measure.js';
import { parseGoal, parseMemory, rank, candidates } from '../../src/he/tiles/optimizer.js';
import type { Calibration } from '../../src/he/tiles/calibrate.js';
import { OP_KINDS, dryBackend } from '../../src/he/tiles/dry-run.js';
import { TEST_PARAMS, encryptedLogits } from './pipeline.js';
import type { Graph, WeightMap } from '../../src/models/graph.js';
import { initBackend } from '../../src/train/backend.js';
import { predict } from '../../src/models/tf-interpreter.js';
import { chain, maxAbsDiff, quad, randomInputs, randomWeights, tinyCnn, tinyMlp } from './fixtures.js';
import { restoreFastestBackend } from '../helpers/backend.js';

function tileShapes(shape: number[], slots: number): number[][] {
  // every way of writing `slots` (a power of two) as a product of per-dimension extents
  const out: number[][] = [];
  const rec = (d: number, left: number, acc: number[]) => {
    if (d === shape.length - 1) return void out.push([...acc, left]);
    for (let t = 1; t <= left; t *= 2) rec(d + 1, left / t, [...acc, t]);
  };
  rec(0, slots, []);
  return out;
}

function orders(rank: number): DimOrder[][] {
  return Array.from({ length: 2 ** rank }, (_, b) => Array.from({ length: rank }, (_, d) => ((b >> d) & 1 ? 'interleave' : 'block')));
}

describe('he/tiles: tile tensors', () => {
  // tests here force the cpu backend; later files in this mocha worker get the fastest back
  after(restoreFastestBackend);
  it('packs and unpacks every tile layout of several tensors back to the same values', () => {
    let layouts = 0;
    for (const shape of [[3, 5], [4, 7, 2], [1, 6], [5, 1, 3]]) {
      const values = Float64Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => i + 1);
      for (const tile of tileShapes(shape, 8)) {
        for (const order of orders(shape.length)) {
          const l = tileLayout(shape, tile, order);
          const tiles = packTiles(l, values);
          expect(tiles.length).to.equal(ciphertextCount(l));
          expect(Array.from(unpackTiles(l, tiles))).to.deep.equal(Array.from(values), `shape [${shape}] tile [${tile}] ${order}`);
          layouts++;
        }
      }
    }
    expect(layouts).to.be.greaterThan(100);
  });

  it('replicates a size-1 dimension across its tile extent', () => {
    const l = tileLayout([1, 3], [4, 2]);
    const [t0, t1] = packTiles(l, [7, 8, 9]);
    expect(Array.from(t0)).to.deep.equal([7, 8, 7, 8, 7, 8, 7, 8]);
    expect(Array.from(t1)).to.deep.equal([9, 0, 9, 0, 9, 0, 9, 0]);
  });

  it('batch, sample, stacked and interleaved packing are tile layouts: [slots, 1], [1, slots], [m, slots/m] and (transposed) [slots/m, m]', () => {
    const g = tinyMlp();
    const p = compileProgram(g, randomWeights(g, 3));
    const slots = 16;
    const x = randomInputs(g, 5, 4);
    const batch = packTiles(batchTiles(5, 6, slots), x);
    expect(batch.map((v) => Array.from(v))).to.deep.equal(packBatch(x, 6, 0, 5, slots).map((v) => Array.from(v)));
    const plan = planSample(p, slots);
    const one = x.subarray(0, 6);
    expect(Array.from(packTiles(sampleTiles(6, slots), one)[0])).to.deep.equal(Array.from(packSample(plan, p, one)[0]));
    // stacked: m samples in blocks of slots/m, what the stacked program's input is
    const sp = stackProgram(p, 2, slots / 2);
    expect(Array.from(packTiles(stackedTiles(2, 6, slots, 2), x.subarray(0, 12))[0])).to.deep.equal(Array.from(packSample(planSample(sp.program, slots), sp.program, stackInputs(sp, x, 6, 2))[0]));
    // interleaved: tile [slots/m, m] over [features, samples] (the samples' values transposed)
    const ip = stackProgram(p, 4, undefined, 'interleave');
    const fs = Float64Array.from({ length: 24 }, (_, k) => x[(k % 4) * 6 + Math.floor(k / 4)]);
    expect(Array.from(packTiles(interleavedTiles(6, slots, 4), fs)[0])).to.deep.equal(Array.from(packSample(planSample(ip.program, slots), ip.program, stackInputs(ip, x, 6, 4))[0]));
  });
});

/**
 * The tfjs interpreter's logits, an implementation that shares no code with the compiler or
 * programForward: a compiler bug that both references would inherit shows against it.
 */
async function expectTfAgrees(g: Graph, w: WeightMap, x: Float32Array, count: number, he: ArrayLike<number>): Promise<void> {
  await initBackend('cpu');
  const tf = predict(g, w, x.subarray(0, count * g.inputShape.reduce((a, b) => a * b, 1)), count);
  const scale = Math.max(1, ...Array.from(tf, Math.abs));
  expect(maxAbsDiff(Array.from(he).slice(0, tf.length), tf), 'encrypted logits vs the tfjs interpreter').to.be.below(1e-2 * scale);
}

/**
 * One pass of a stacked or interleaved program on SEAL: each of the `count` samples' logits
 * agree with the plaintext program and with the tfjs interpreter (`tf`: the graph and weights
 * the program was compiled from), and the dry run's counts equal the pass's.
 */
async function expectPassAgrees(p: HeProgram, sp: StackedProgram, x: Float32Array, per: number, count: number, tf: { g: Graph; w: WeightMap }, passes = 1): Promise<PassMeasurement> {
  const slots = TEST_PARAMS.polyModulusDegree / 2;
  const res = await measurePass({ kind: 'stacked', params: TEST_PARAMS, program: sp.program, x: stackInputs(sp, x, per, count), count: 1, passes });
  const he = unstackOutputs(sp, res.outputs, count);
  for (let s = 0; s < count; s++) {
    const want = programForward(p, Float64Array.from(x.subarray(s * per, (s + 1) * per)))[p.output];
    expect(maxAbsDiff(he.subarray(s * p.classes, (s + 1) * p.classes), want)).to.be.below(1e-2, `sample ${s}`);
  }
  await expectTfAgrees(tf.g, tf.w, x, count, he);
  const plan = planSample(sp.program, slots);
  const cost = passCost({ kind: 'stacked', params: TEST_PARAMS, program: sp.program, plan, samplesPerPass: sp.samples });
  expect(cost.counts).to.deep.equal(res.counts);
  return res;
}

describe('he/tiles: stacked packing under encryption', () => {
  // tests here force the cpu backend; later files in this mocha worker get the fastest back
  after(restoreFastestBackend);
  for (const [name, make] of [['dense', tinyMlp], ['conv', tinyCnn]] as const) {
    // m = 1 is sample packing itself, run below through the server
    for (const m of [2, 4]) {
      it(`${name}: ${m} samples per ciphertext agree with plaintext on SEAL, with the cost model's counts`, async function () {
        const g = make();
        const w = randomWeights(g, 11);
        const p = compileProgram(g, w);
        const per = g.inputShape.reduce((a, b) => a * b, 1);
        const x = randomInputs(g, m, 12);
        const slots = TEST_PARAMS.polyModulusDegree / 2;
        await expectPassAgrees(p, stackForSlots(p, m, slots), x, per, m, { g, w });
      });
    }
  }
});

describe('he/tiles: interleaved packing, the family from sample packing (m = 1) to batch packing (m = slots)', () => {
  // tests here force the cpu backend; later files in this mocha worker get the fastest back
  after(restoreFastestBackend);
  const slots = TEST_PARAMS.polyModulusDegree / 2;
  for (const m of [1, 8, 64, slots]) {
    it(`dense: ${m} sample${m === 1 ? '' : 's'} interleaved (samples innermost) agree with plaintext on SEAL, with the cost model's counts`, async function () {
      const g = tinyMlp();
      const w = randomWeights(g, 13);
      const p = compileProgram(g, w);
      const per = 6;
      // a few real samples; the rest of the m are zeros (a partial pass)
      const count = Math.min(m, 5);
      const x = randomInputs(g, count, 14);
      const sp = stackProgram(p, m, undefined, 'interleave');
      // one sample's kernels serve all m: the program is not rewritten, only marked
      expect(sp.program.steps).to.equal(p.steps);
      expect(sp.program.interleave).to.equal(m);
      // two passes in one heap for m = 8: the second is what he-plan reports, and its counts are one pass's
      const passes = m === 8 ? 2 : 1;
      const res = await expectPassAgrees(p, sp, x, per, count, { g, w }, passes);
      expect(res.firstEvaluateMs).to.be.above(0);
      // the speed probe of the evaluating thread, taken before the reported pass (he-plan's thread speed)
      expect(res.probeMs).to.be.above(0);
      if (passes === 1) expect(res.firstEvaluateMs).to.equal(res.evaluateMs);
      else expect(res.evaluateMs).to.be.above(0);
    });
  }

  it('at m = slots it is batch packing: no rotation, the batch evaluator\'s plaintext and ciphertext products', () => {
    const g = tinyMlp();
    const p = compileProgram(g, randomWeights(g, 15));
    const sp = stackProgram(p, slots, undefined, 'interleave');
    const plan = planSample(sp.program, slots);
    const inter = passCost({ kind: 'stacked', params: TEST_PARAMS, program: sp.program, plan, samplesPerPass: slots });
    const batch = passCost({ kind: 'batch', params: TEST_PARAMS, program: p, plan: null, samplesPerPass: slots });
    expect(inter.counts.rotations).to.equal(0);
    expect(inter.counts.ptMults).to.equal(batch.counts.ptMults);
    expect(inter.counts.ctCtMults).to.equal(batch.counts.ctCtMults);
    expect(inter.inputCiphertexts).to.equal(batch.inputCiphertexts);
    // and the input tiles are batch packing's: a ciphertext per feature, sample s in slot s
    const x = randomInputs(g, 7, 16);
    expect(packSample(plan, sp.program, stackInputs(sp, x, 6, 7)).map((v) => Array.from(v))).to.deep.equal(packBatch(x, 6, 0, 7, slots).map((v) => Array.from(v)));
  });

  // a strided convolution on a plain image plane (no pooling): the he-bench-mnist shape
  const stridedCnn = () =>
    chain([8, 8, 1], 3, [
      ['conv1', { op: 'conv2d', filters: 3, kernel: 3, stride: 2, padding: 'valid', bias: true }],
      ['act1', quad],
      ['flatten1', { op: 'flatten' }],
      ['dense1', { op: 'dense', units: 5, bias: true }],
      ['act2', quad],
      ['dense2', { op: 'dense', units: 3, bias: true }],
    ]);
  for (const [name, make, ms] of [
    ['conv, phase-grouped pooling (tinyCnn)', tinyCnn, [2, 16]],
    ['strided conv on an image plane', stridedCnn, [4, 64]],
  ] as const) {
    for (const m of ms) {
      it(`${name}: ${m} samples interleaved in every pixel agree with plaintext on SEAL, with the cost model's counts`, async function () {
        const g = make();
        const w = randomWeights(g, 18);
        const p = compileProgram(g, w);
        const per = g.inputShape.reduce((a, b) => a * b, 1);
        const count = Math.min(m, 5);
        const x = randomInputs(g, count, 19);
        const sp = stackProgram(p, m, undefined, 'interleave');
        await expectPassAgrees(p, sp, x, per, count, { g, w });
        // the samples share the rotations and fill the diagonals: the pass has sample packing's rotations at most, and fewer products per sample
        const one = passCost({ kind: 'sample', params: TEST_PARAMS, program: p, plan: planSample(p, slots), samplesPerPass: 1 });
        const many = passCost({ kind: 'stacked', params: TEST_PARAMS, program: sp.program, plan: planSample(sp.program, slots), samplesPerPass: m });
        expect(many.counts.rotations).to.be.at.most(one.counts.rotations);
        expect(many.counts.ptMults / m).to.be.below(one.counts.ptMults);
      });
    }
  }

  it('refuses more samples than an image plane holds, naming the M that fits', () => {
    const g = stridedCnn();
    const p = compileProgram(g, randomWeights(g, 17));
    // 8x8 pixels take 64 slots per sample: 64 samples fill the 4096 slots
    expect(() => planSample(stackProgram(p, 128, undefined, 'interleave').program, slots)).to.throw(HepolyError, /128 samples of a 8x8 image plane need 8192 slots.*--packing interleaved:64/);
  });

  it('an image that is only flattened (an MLP on images) is interleaved as a vector, past the plane limit', async function () {
    const g = chain([8, 8, 1], 3, [
      ['flatten1', { op: 'flatten' }],
      ['dense1', { op: 'dense', units: 5, bias: true }],
      ['act1', quad],
      ['dense2', { op: 'dense', units: 3, bias: true }],
    ]);
    const w = randomWeights(g, 20);
    const p = compileProgram(g, w);
    const sp = stackProgram(p, 128, undefined, 'interleave');
    // 64 features x 128 samples: two ciphertexts, where 8x8 planes of 128 samples would not fit
    expect(planSample(sp.program, slots).layouts[p.input]!.cts).to.equal(2);
    await expectPassAgrees(p, sp, randomInputs(g, 5, 21), 64, 5, { g, w });
  });
});

describe("he/tiles: batch and sample packing agree with plaintext, and the cost model's counts equal the server's", () => {
  // tests here force the cpu backend; later files in this mocha worker get the fastest back
  after(restoreFastestBackend);
  for (const [name, make] of [['mlp', tinyMlp], ['cnn', tinyCnn]] as const) {
    for (const packing of ['batch', 'sample'] as const) {
      it(`${name}, ${packing} packing`, async function () {
        const g = make();
        const w = randomWeights(g, 5);
        const p = compileProgram(g, w);
        const count = 3;
        const x = randomInputs(g, count, 6);
        const { logits, server, client } = await encryptedLogits(g, w, x, count, packing);
        await server.close();
        client.delete();
        const per = g.inputShape.reduce((a, b) => a * b, 1);
        for (let s = 0; s < count; s++) {
          const want = programForward(p, Float64Array.from(x.subarray(s * per, (s + 1) * per)))[p.output];
          expect(maxAbsDiff(logits.subarray(s * g.classes, (s + 1) * g.classes), want)).to.be.below(1e-2);
        }
        await expectTfAgrees(g, w, x, count, logits);
        const slots = TEST_PARAMS.polyModulusDegree / 2;
        const plan = packing === 'sample' ? planSample(p, slots) : null;
        const cost = passCost({ kind: packing, params: TEST_PARAMS, program: p, plan, samplesPerPass: packing === 'batch' ? slots : 1, workers: 2 });
        const passes = packing === 'batch' ? 1 : count;
        const want = Object.fromEntries(Object.entries(cost.counts).map(([k, v]) => [k, v * passes]));
        expect(server.counts).to.deep.equal(want);
      });
    }
  }
});

describe('he/tiles: optimizer', () => {
  // tests here force the cpu backend; later files in this mocha worker get the fastest back
  after(restoreFastestBackend);
  const flat: Calibration = {
    key: 'test',
    measuredAt: '',
    ops: Object.fromEntries(OP_KINDS.map((k) => [k, { base: k === 'rotate' || k === 'multiply' ? 1 : 0.1, perPrime: 0.1 }])) as Calibration['ops'],
  };
  const g = tinyMlp();
  const p = compileProgram(g, randomWeights(g, 3));
  const cands = candidates(p, TEST_PARAMS, { rings: 1, maxStack: 8 });

  it('offers batch, sample, stacked and interleaved candidates and ranks them per goal', () => {
    expect(cands.map((c) => c.name)).to.include.members(['batch N=8192', 'sample N=8192', 'stacked x2 N=8192', 'stacked x8 N=8192', 'interleaved x2 N=8192', 'interleaved x8 N=8192']);
    // interleaving fills the diagonals: per sample, fewer plaintext products as M grows
    const inter = cands.filter((c) => c.name.startsWith('interleaved'));
    const perSample = inter.map((c) => c.cost.counts.ptMults / c.shape.samplesPerPass);
    expect(perSample[perSample.length - 1]).to.be.below(perSample[0]);
    const cnn = tinyCnn();
    const names = candidates(compileProgram(cnn, randomWeights(cnn, 3)), TEST_PARAMS, { rings: 1, maxStack: 4 }).map((c) => c.name);
    expect(names).to.include.members(['stacked x2 N=8192', 'interleaved x2 N=8192']);
    const lat = rank(cands, () => flat, 'latency', 2 ** 40);
    const thr = rank(cands, () => flat, 'throughput', 2 ** 40);
    const mem = rank(cands, () => flat, 'memory', 2 ** 40);
    expect(lat[0].prediction.latencyMs).to.equal(Math.min(...lat.map((c) => c.prediction.latencyMs)));
    expect(thr[0].name).to.equal('batch N=8192');
    expect(mem[0].prediction.memoryBytes).to.equal(Math.min(...mem.map((c) => c.prediction.memoryBytes)));
  });

  it('keeps client-only plans for multi-sample candidates after costing them; no evaluator accepts one', () => {
    const c = cands.find((x) => x.name.startsWith('interleaved'))!;
    expect(c.shape.plan!.clientOnly).to.equal(true);
    expect(c.shape.plan!.layouts[c.shape.program.input]).to.not.equal(null);
    expect(c.cost.counts.ptMults).to.be.above(0);
    expect(() => new SampleEvaluator(c.shape.program, c.shape.plan!, dryBackend(TEST_PARAMS).be)).to.throw(/client-only plan/);
  });

  it('refuses bad options naming the option and the fix', () => {
    expect(() => parseGoal('speed')).to.throw(HepolyError, /--goal.*latency, throughput or memory/);
    expect(() => parseMemory('8GB?')).to.throw(HepolyError, /--memory.*8GiB/);
    expect(parseMemory('8GiB')).to.equal(8 * 2 ** 30);
    expect(parseMemory('512MB')).to.equal(512e6);
    expect(() => rank(cands, () => flat, 'latency', 1000)).to.throw(HepolyError, /--memory.*Raise --memory to at least/);
  });
});
