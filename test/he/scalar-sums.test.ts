import { expect } from 'chai';
import { openScalarSums, ProductSums, type ScalarSums } from '../../src/he/scalar-sums.js';
import { withSealBackend } from './seal-fixture.js';
import type { HeParams } from '../../src/he/params.js';
import type { CipherText } from '../../src/he/seal.js';

/**
 * The residue kernel (seal-scalar-sums.ts) against SEAL's own multiply_plain + add sequence:
 * the sums must be the same bytes, and decrypt to sum_k w_k x_k. The chains cover narrow
 * limbs (28 and 32 bits, the latter reduced every 15 terms, which 200 terms of random residues would overflow), wide ones (38 and 45 bits) and
 * inputs above the sums' level.
 */
describe('scalar sums on residues (batch packing linear layers)', function () {
  this.timeout(120000);

  interface Case {
    name: string;
    params: HeParams;
    inputs: number;
    outputs: number;
    /** level of the inputs above the sums' level */
    above: number;
    budget?: number;
  }
  const cases: Case[] = [
    { name: 'N=4096 [38, 28, 38] (wide q0, narrow q1)', params: { polyModulusDegree: 4096, coeffModulusBits: [38, 28, 38], scaleBits: 28 }, inputs: 24, outputs: 5, above: 0 },
    { name: 'N=8192 [45, 32, 30, 45], inputs a level above, 200 terms per sum', params: { polyModulusDegree: 8192, coeffModulusBits: [45, 32, 30, 45], scaleBits: 30 }, inputs: 200, outputs: 3, above: 1 },
    { name: 'N=4096 [38, 28, 38], partial sums when the residues pass their budget', params: { polyModulusDegree: 4096, coeffModulusBits: [38, 28, 38], scaleBits: 28 }, inputs: 24, outputs: 5, above: 0, budget: 600_000 },
  ];

  for (const c of cases) {
    it(`${c.name}: the same bytes as multiply_plain + add, and the right sums`, async () => {
      await withSealBackend(c.params, (client, be) => {
        const values = Array.from({ length: c.inputs }, (_, i) => Float64Array.from({ length: 16 }, (_, s) => Math.sin(1 + i * 0.7 + s * 1.3)));
        const xs = values.map((v) => be.deserialize(client.encrypt([v])[0]));
        const level = be.levelOf(xs[0]) - c.above;
        const target = be.scale * be.prime(level);
        // negative, tiny (rounds to zero at its scale) and ordinary weights
        const w = (o: number, i: number) => (i === 3 ? 1e-12 : Math.cos(o * 2.1 + i * 0.9) * (i % 5 === 0 ? -1.7 : 0.4));
        const run = (sums: ScalarSums<CipherText>) => {
          for (let i = 0; i < c.inputs; i++) for (let o = 0; o < c.outputs; o++) sums.add(o, xs[i], w(o, i), target / be.scaleOf(xs[i]), `x${i}`);
          return sums.finish();
        };
        const fused = be.scalarSums(level, c.budget);
        expect(fused, 'the kernel takes these primes').to.not.equal(null);
        const got = run(fused!);
        const want = run(new ProductSums(be, level));
        expect(got.size).to.equal(c.outputs);
        for (let o = 0; o < c.outputs; o++) {
          const a = got.get(o)!;
          const b = want.get(o)!;
          expect(be.levelOf(a)).to.equal(level);
          expect(be.scaleOf(a)).to.equal(be.scaleOf(b));
          expect(Buffer.from(be.serialize(a)).equals(Buffer.from(be.serialize(b))), `output ${o} bytes`).to.equal(true);
          be.rescaleInPlace(a);
          const dec = client.decrypt(be.serialize(a));
          for (let s = 0; s < 16; s++) {
            let ref = 0;
            for (let i = 0; i < c.inputs; i++) ref += w(o, i) * values[i][s];
            expect(dec[s]).to.be.closeTo(ref, 1e-3);
          }
          be.free(a);
          be.free(b);
        }
        xs.forEach((x) => be.free(x));
      });
    });
  }

  it('a prime wider than the kernel takes (50 bits) falls back to SEAL products', async () => {
    await withSealBackend({ polyModulusDegree: 8192, coeffModulusBits: [50, 40, 50], scaleBits: 40 }, (client, be) => {
      const x = be.deserialize(client.encrypt([Float64Array.from([2, -3])])[0]);
      const level = be.levelOf(x);
      expect(be.scalarSums(level)).to.equal(null);
      const sums = openScalarSums(be, level);
      sums.add(0, x, 0.25, be.prime(level), 'x');
      sums.add(0, x, 0.5, be.prime(level), 'x');
      const out = sums.finish().get(0)!;
      be.rescaleInPlace(out);
      const dec = client.decrypt(be.serialize(out));
      expect(dec[0]).to.be.closeTo(1.5, 1e-4);
      expect(dec[1]).to.be.closeTo(-2.25, 1e-4);
      be.free(out);
      be.free(x);
    });
  });
});
