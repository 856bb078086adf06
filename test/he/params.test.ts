import { expect } from 'chai';
import { HepolyError } from '../../src/util/errors.js';
import { RING_DEGREES, TC128_MAX_BITS, checkParams, chooseParams, levelsOf } from '../../src/he/params.js';
import { CkksContext, loadSeal } from '../../src/he/seal.js';

describe('he/params: CKKS parameters and 128-bit security', () => {
  it('the security table is the one SEAL enforces (CoeffModulus.MaxBitCount at tc128)', async () => {
    const seal = await loadSeal();
    for (const N of RING_DEGREES) expect(seal.CoeffModulus.MaxBitCount(N, seal.SecurityLevel.tc128), `N=${N}`).to.equal(TC128_MAX_BITS[N]);
  });

  it('auto picks the smallest secure ring for the depth, and SEAL accepts it at tc128', async () => {
    const seal = await loadSeal();
    const p5 = chooseParams({ depth: 5, maxAbs: 100 });
    expect(p5.polyModulusDegree).to.equal(8192);
    expect(levelsOf(p5)).to.equal(5);
    expect(p5.coeffModulusBits.reduce((a, b) => a + b, 0)).to.be.at.most(218);
    expect(p5.coeffModulusBits[0] - p5.scaleBits).to.be.at.least(9);
    const p2 = chooseParams({ depth: 1, maxAbs: 10 });
    expect(p2.polyModulusDegree).to.equal(4096);
    const p12 = chooseParams({ depth: 12, maxAbs: 10 });
    expect(p12.polyModulusDegree).to.equal(16384);
    for (const p of [p2, p5, p12]) {
      const ctx = CkksContext.create(seal, p);
      expect(ctx.topLevel).to.equal(levelsOf(p));
      ctx.delete();
    }
  });

  it('refuses a depth no secure ring can hold, naming depth needed vs possible and the fix', () => {
    expect(() => chooseParams({ depth: 40, maxAbs: 10 }))
      .to.throw(HepolyError)
      .with.property('message')
      .that.matches(/needs multiplicative depth 40.*N=32768\) allows 881 bits, i\.e\. depth \d+.*fewer activation layers/);
  });

  it('refuses expert parameters with too few levels, naming depth needed vs available', () => {
    const p = { polyModulusDegree: 8192, coeffModulusBits: [40, 30, 30, 40], scaleBits: 30 };
    expect(() => checkParams(p, { depth: 5, maxAbs: 10 }, 'my-params.json'))
      .to.throw(HepolyError)
      .with.property('message')
      .that.matches(/^my-params\.json: coeff_modulus_bits: the network needs depth 5 but these 4 primes give 2 levels.*Add 3 more level prime/);
  });

  it('refuses insecure expert parameters (more modulus bits than 128-bit security allows)', () => {
    const p = { polyModulusDegree: 4096, coeffModulusBits: [40, 30, 30, 40], scaleBits: 30 };
    expect(() => checkParams(p, { depth: 2, maxAbs: 10 }, 'p.json')).to.throw(/p\.json: coeff_modulus_bits: 140 bits in total is insecure for poly_modulus_degree 4096 \(128-bit security allows at most 109\)\. Use poly_modulus_degree 8192/);
  });

  it('refuses a first prime too small for the values (overflow at the last level)', () => {
    const p = { polyModulusDegree: 8192, coeffModulusBits: [32, 30, 30, 40], scaleBits: 30 };
    expect(() => checkParams(p, { depth: 2, maxAbs: 1000 }, 'p.json')).to.throw(/q0 = 32 bits leaves 2 bits above the 30-bit scale, but values reach 1\.00e\+3/);
  });
});
