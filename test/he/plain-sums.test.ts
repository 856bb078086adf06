import { expect } from 'chai';
import { HEClient } from '../../src/he/client.js';
import { deleteEvaluationKeys, loadEvaluationKeys } from '../../src/he/keys.js';
import { SealBackend } from '../../src/he/seal-backend.js';
import { withSealBackend } from './seal-fixture.js';
import type { HeParams } from '../../src/he/params.js';
import { compileProgram } from '../../src/he/compile.js';
import { programForward } from '../../src/he/reference.js';
import { SampleEvaluator, packSample, planSample, unpackTensor } from '../../src/he/packing/sample.js';
import { limbsAt, residueBytes } from '../../src/he/residue-arena.js';
import { chain, maxAbsDiff, quad, randomInputs, randomWeights } from './fixtures.js';
import { TEST_PARAMS } from './pipeline.js';

/**
 * The plaintext-sum kernel (seal-plain-sums.ts) against SEAL's own multiply_plain + add
 * sequence: the same bytes, and a decryption equal to sum_k p_k x_k. The chains cover narrow
 * limbs (28 bits, and 32 bits, reduced every 15 terms), wide ones (38 and 45 bits), and a sum
 * longer than one block of elements times the batch between reductions.
 */
describe('plaintext sums on residues (sample packing inner sums)', function () {
  this.timeout(120000);

  const cases: { name: string; params: HeParams; terms: number }[] = [
    { name: 'N=4096 [38, 28, 38], 36 terms', params: { polyModulusDegree: 4096, coeffModulusBits: [38, 28, 38], scaleBits: 28 }, terms: 36 },
    { name: 'N=8192 [45, 32, 30, 45], 40 terms (32-bit limb reduced every 15)', params: { polyModulusDegree: 8192, coeffModulusBits: [45, 32, 30, 45], scaleBits: 30 }, terms: 40 },
  ];

  for (const c of cases) {
    it(`${c.name}: the same bytes as multiply_plain + add, and the right sums`, async () => {
      await withSealBackend(c.params, (client, be) => {
        const slots = be.slots;
        const inputs = 6;
        const xv = Array.from({ length: inputs }, (_, i) => Float64Array.from({ length: slots }, (_, s) => Math.sin(1 + i * 0.7 + s * 1.3)));
        const xs = xv.map((v) => be.deserialize(client.encrypt([v])[0]));
        const level = be.levelOf(xs[0]);
        // one all-zero plaintext among them (adds nothing, as SEAL's sequence skips it)
        const pv = Array.from({ length: c.terms }, (_, k) => (k === 5 ? new Float64Array(slots) : Float64Array.from({ length: slots }, (_, s) => Math.cos(k * 2.1 + s * 0.013) * (k % 3 ? 0.4 : -1.3))));
        const ptScale = be.prime(level);
        const residues = pv.map((v) => be.encodeResidues(v, ptScale, level)!);
        expect(residues[5].zero).to.equal(true);
        const sums = be.plainSums(level)!;
        expect(sums, 'the kernel takes these primes').to.not.equal(null);
        xs.forEach((x, i) => sums.load(`x${i}`, x));
        const got = sums.sum(residues.map((p, k) => ({ key: `x${k % inputs}`, p })));
        sums.close();
        let want = be.mulPlain(xs[0], be.encode(pv[0], ptScale, level));
        for (let k = 1; k < c.terms; k++) {
          const pt = be.encode(pv[k], ptScale, level);
          be.mulPlainAddInPlace(want, xs[k % inputs], pt);
          be.freePlain(pt);
        }
        expect(be.levelOf(got)).to.equal(level);
        expect(be.scaleOf(got)).to.equal(be.scaleOf(want));
        expect(Buffer.from(be.serialize(got)).equals(Buffer.from(be.serialize(want))), 'bytes').to.equal(true);
        be.rescaleInPlace(got);
        const dec = client.decrypt(be.serialize(got));
        for (const s of [0, 1, 77, slots - 1]) {
          let exact = 0;
          for (let k = 0; k < c.terms; k++) exact += pv[k][s] * xv[k % inputs][s];
          expect(dec[s]).to.be.closeTo(exact, 1e-3);
        }
        be.free(got);
        be.free(want);
        for (const x of xs) be.free(x);
      });
    });
  }
});

describe('sample packing with plaintext sums: the evaluator on residues, in groups, and by SEAL products give the same bytes', function () {
  this.timeout(300000);

  it('a strided CNN (multiplexed planes): default budget, a 3-input budget (babies loaded in groups) and multiply_plain agree byte for byte and with the reference', async () => {
    // 32x32 planes: 4 per ciphertext at N=8192; the stride-2 conv's 16 channels multiplex into one
    const graph = chain([32, 32, 1], 3, [
      ['conv1', { op: 'conv2d', filters: 8, kernel: 3, stride: 1, padding: 'same', bias: true }],
      ['act1', quad],
      ['conv2', { op: 'conv2d', filters: 16, kernel: 3, stride: 2, padding: 'same', bias: true }],
      ['act2', quad],
      ['flatten1', { op: 'flatten' }],
      ['dense1', { op: 'dense', units: 3, bias: true }],
    ]);
    const program = compileProgram(graph, randomWeights(graph, 4));
    const client = await HEClient.create(TEST_PARAMS);
    const plan = planSample(program, client.slots);
    expect(plan.layouts.some((l) => (l?.plane?.subs?.length ?? 1) === 4)).to.equal(true);
    const keys = loadEvaluationKeys(client.ctx, client.publicBundle(plan.rotationSteps));
    const whole = new SealBackend(client.ctx, keys);
    const grouped = new SealBackend(client.ctx, keys);
    const top = limbsAt(client.ctx, grouped.topLevel)!;
    const open = grouped.plainSums.bind(grouped);
    let groups = 0;
    grouped.plainSums = (level) => {
      const s = open(level, 3 * residueBytes(TEST_PARAMS.polyModulusDegree, top));
      const reset = s!.reset.bind(s);
      s!.reset = () => (groups++, reset());
      return s;
    };
    const products = Object.assign(new SealBackend(client.ctx, keys), { plainSums: undefined, encodeResidues: undefined });
    try {
      const x = randomInputs(graph, 1, 9, 0, 1);
      const input = client.encrypt(packSample(plan, program, x));
      const run = (be: SealBackend) => {
        const ev = new SampleEvaluator(program, plan, be);
        const outs = ev.run(input.map((b) => be.deserialize(b)));
        const bytes = outs.map((c) => be.serialize(c));
        for (const c of outs) be.free(c);
        ev.delete();
        return bytes;
      };
      const [a, b, c] = [run(whole), run(grouped), run(products)];
      expect(groups, 'babies loaded in more groups than linear steps').to.be.above(3);
      for (let k = 0; k < a.length; k++) {
        expect(Buffer.from(a[k]).equals(Buffer.from(c[k])), `output ${k}: residues vs multiply_plain`).to.equal(true);
        expect(Buffer.from(b[k]).equals(Buffer.from(c[k])), `output ${k}: in groups vs multiply_plain`).to.equal(true);
      }
      const got = unpackTensor(plan, program.output, a.map((bytes) => client.decrypt(bytes)));
      expect(maxAbsDiff(got, programForward(program, Float64Array.from(x))[program.output])).to.be.below(1e-2);
    } finally {
      deleteEvaluationKeys(keys);
      client.delete();
    }
  });
});
