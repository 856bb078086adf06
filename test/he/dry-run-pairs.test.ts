import { expect } from 'chai';
import { DryBackend } from '../../src/he/tiles/dry-run.js';
import { FUSED_MIN_PAIRS, openPairSums, ProductPairSums } from '../../src/he/pair-sums.js';

/**
 * The cost model prices a dot step as the evaluator runs it on SEAL: outputs of several
 * products as fused pair sums (an operand read once, a term per product, an output written),
 * outputs of one product as SEAL's unrelinearized multiply; every sum relinearized once.
 */
describe('dry run: dot steps priced as the evaluator runs them', () => {
  const params = { polyModulusDegree: 1024, coeffModulusBits: [40, 30, 30, 40], scaleBits: 30 };

  it('fused pair sums: one read per operand, one term per product, one output per sum', () => {
    const be = new DryBackend(params);
    const sums = openPairSums(be, 2, FUSED_MIN_PAIRS);
    expect(sums).to.not.be.instanceOf(ProductPairSums);
    const x = be.encryptVec(new Float64Array(1), be.scale, 2);
    for (const key of ['a', 'b', 'c']) if (!sums.has(key)) sums.load(key, x);
    expect(sums.has('a')).to.equal(true);
    for (const [o, a, b] of [[0, 'a', 'b'], [0, 'a', 'c'], [0, 'b', 'c'], [1, 'a', 'a']] as const) sums.add(o, a, b, false);
    const outs: number[] = [];
    sums.finishEach((o, c) => {
      outs.push(o);
      expect(be.scaleOf(c)).to.equal(be.scale * be.scale);
      be.relinearizeInPlace(c);
      be.free(c);
    });
    sums.close();
    expect(outs).to.deep.equal([0, 1]);
    const at = (k: keyof typeof be.tally.ops) => be.tally.ops[k][2];
    expect([at('pairInput'), at('pairTerm'), at('pairOutput'), at('relinearize')]).to.deep.equal([3, 4, 2, 2]);
    expect(at('multiply') + at('multiplyNoRelin')).to.equal(0);
  });

  it('single products go to SEAL multiplies, left unrelinearized; primes over the kernel width have no fused sums', () => {
    const be = new DryBackend(params);
    const sums = openPairSums(be, 2, FUSED_MIN_PAIRS - 1);
    expect(sums).to.be.instanceOf(ProductPairSums);
    const x = be.encryptVec(new Float64Array(1), be.scale, 2);
    sums.load('a', x);
    sums.load('b', x);
    sums.add(0, 'a', 'b', false);
    sums.finishEach((_o, c) => be.free(c));
    sums.close();
    expect(be.tally.ops.multiplyNoRelin[2]).to.equal(1);
    expect(be.tally.ops.pairTerm[2]).to.equal(0);
    expect(new DryBackend({ polyModulusDegree: 8192, coeffModulusBits: [50, 50, 50], scaleBits: 50 }).pairSums(1)).to.equal(null);
  });
});
