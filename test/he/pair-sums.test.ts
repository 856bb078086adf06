import { expect } from 'chai';
import { HEClient } from '../../src/he/client.js';
import { deleteEvaluationKeys, loadEvaluationKeys } from '../../src/he/keys.js';
import { FUSED_MIN_PAIRS, openPairSums, ProductPairSums } from '../../src/he/pair-sums.js';
import { SealBackend } from '../../src/he/seal-backend.js';
import type { HeParams } from '../../src/he/params.js';
import type { CipherText } from '../../src/he/seal.js';

/**
 * Sums of ciphertext products on residues (seal-pair-sums.ts) against SEAL's own unrelinearized
 * products and additions: the same bytes, and after one relinearization and rescale, the sums
 * of the products of the encrypted values. Squares, negated pairs, operands above the sums'
 * level and partial sums past the kernel's memory budget are in the cases.
 */
describe('pair sums on residues (batch packing dot steps)', function () {
  this.timeout(120000);

  const cases: { name: string; params: HeParams; above: number; budget?: number }[] = [
    { name: 'N=4096 [39, 29, 39]', params: { polyModulusDegree: 4096, coeffModulusBits: [39, 29, 39], scaleBits: 29 }, above: 0 },
    { name: 'N=8192 [45, 32, 30, 45], operands a level above', params: { polyModulusDegree: 8192, coeffModulusBits: [45, 32, 30, 45], scaleBits: 30 }, above: 1 },
    { name: 'N=4096 [39, 29, 39], partial sums past the budget', params: { polyModulusDegree: 4096, coeffModulusBits: [39, 29, 39], scaleBits: 29 }, above: 0, budget: 700_000 },
  ];
  const inputs = 8;
  const outputs = 4;
  // output o sums pairs (i, j) with i + j = o + 3 (squares among them), every third one negated
  const pairs: { o: number; i: number; j: number; negate: boolean }[] = [];
  for (let o = 0; o < outputs; o++) for (let i = 0; i < inputs; i++) for (let j = i; j < inputs; j++) if (i + j === o + 3 || (o === 0 && i === j)) pairs.push({ o, i, j, negate: pairs.length % 3 === 2 });

  for (const c of cases) {
    it(`${c.name}: SEAL's unrelinearized sums, byte for byte, and the right values`, async () => {
      const client = await HEClient.create(c.params);
      const keys = loadEvaluationKeys(client.ctx, client.publicBundle([]));
      const be = new SealBackend(client.ctx, keys);
      try {
        const values = Array.from({ length: inputs }, (_, i) => Float64Array.from({ length: 8 }, (_, s) => Math.sin(2 + i * 0.9 + s * 0.7)));
        const xs = values.map((v) => be.deserialize(client.encrypt([v])[0]));
        const level = be.levelOf(xs[0]) - c.above;
        const low = xs.map((x) => {
          const y = be.clone(x);
          be.modSwitchInPlace(y, level);
          return y;
        });
        const sums = be.pairSums(level, c.budget)!;
        expect(sums, 'the kernel takes these primes').to.not.equal(null);
        const got = new Map<number, CipherText>();
        for (const t of pairs) {
          for (const k of [t.i, t.j]) if (!sums.has(`x${k}`)) sums.load(`x${k}`, xs[k]);
          if (!sums.has(`x${t.i}`)) sums.load(`x${t.i}`, xs[t.i]);
          sums.add(t.o, `x${t.i}`, `x${t.j}`, t.negate);
        }
        sums.finishEach((o, ct) => got.set(o, ct));
        sums.close();
        expect(got.size).to.equal(outputs);
        for (let o = 0; o < outputs; o++) {
          let want: CipherText | null = null;
          for (const t of pairs.filter((p) => p.o === o)) {
            const prod = be.multiplyNoRelin(low[t.i], low[t.j]);
            if (t.negate) be.negateInPlace(prod);
            if (!want) want = prod;
            else {
              be.addInPlace(want, prod);
              be.free(prod);
            }
          }
          const a = got.get(o)!;
          expect(Buffer.from(be.serialize(a)).equals(Buffer.from(be.serialize(want!))), `output ${o} bytes`).to.equal(true);
          be.relinearizeInPlace(a);
          be.rescaleInPlace(a);
          const dec = client.decrypt(be.serialize(a));
          for (let s = 0; s < 8; s++) {
            let ref = 0;
            for (const t of pairs.filter((p) => p.o === o)) ref += (t.negate ? -1 : 1) * values[t.i][s] * values[t.j][s];
            expect(dec[s]).to.be.closeTo(ref, 1e-3);
          }
          be.free(a);
          be.free(want!);
        }
        [...xs, ...low].forEach((x) => be.free(x));
      } finally {
        be.delete();
        deleteEvaluationKeys(keys);
        client.delete();
      }
    });
  }

  it('outputs of fewer than FUSED_MIN_PAIRS products go to SEAL; more to the fused sums', async () => {
    const client = await HEClient.create(cases[0].params);
    const keys = loadEvaluationKeys(client.ctx, client.publicBundle([]));
    const be = new SealBackend(client.ctx, keys);
    try {
      const level = client.ctx.topLevel;
      const one = openPairSums(be, level, FUSED_MIN_PAIRS - 1);
      const two = openPairSums(be, level, FUSED_MIN_PAIRS);
      expect(one).to.be.instanceOf(ProductPairSums);
      expect(two).to.not.be.instanceOf(ProductPairSums);
      one.close();
      two.close();
    } finally {
      be.delete();
      deleteEvaluationKeys(keys);
      client.delete();
    }
  });

  it('primes wider than the kernel takes fall back to SEAL products', async () => {
    const client = await HEClient.create({ polyModulusDegree: 8192, coeffModulusBits: [50, 40, 50], scaleBits: 40 });
    const keys = loadEvaluationKeys(client.ctx, client.publicBundle([]));
    const be = new SealBackend(client.ctx, keys);
    try {
      const x = be.deserialize(client.encrypt([Float64Array.from([2, -3])])[0]);
      const y = be.deserialize(client.encrypt([Float64Array.from([0.5, 4])])[0]);
      const level = be.levelOf(x);
      expect(be.pairSums(level)).to.equal(null);
      const sums = openPairSums(be, level, 2);
      expect(sums).to.be.instanceOf(ProductPairSums);
      sums.load('x', x);
      sums.load('y', y);
      sums.add(0, 'x', 'y', false);
      sums.add(0, 'x', 'x', true);
      let out: CipherText | null = null;
      sums.finishEach((_, c) => (out = c));
      sums.close();
      be.relinearizeInPlace(out!);
      be.rescaleInPlace(out!);
      const dec = client.decrypt(be.serialize(out!));
      expect(dec[0]).to.be.closeTo(2 * 0.5 - 4, 1e-4);
      expect(dec[1]).to.be.closeTo(-3 * 4 - 9, 1e-4);
      be.free(out!);
      [x, y].forEach((c) => be.free(c));
    } finally {
      be.delete();
      deleteEvaluationKeys(keys);
      client.delete();
    }
  });
});
