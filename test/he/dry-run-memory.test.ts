import { expect } from 'chai';
import { DryBackend, ciphertextMemory, plaintextMemory } from '../../src/he/tiles/dry-run.js';

/**
 * The memory the cost model predicts follows SEAL's pools: an allocation keeps the size it was
 * made with (a product holds three polynomials, an in-place rescale shrinks nothing), and a
 * freed allocation serves only a later one of the same size.
 */
describe('dry run: SEAL heap model (pools per allocation size)', () => {
  const params = { polyModulusDegree: 1024, coeffModulusBits: [40, 30, 30, 40], scaleBits: 30 };
  const N = params.polyModulusDegree;

  it('a freed ciphertext is reused by one of its size, not by one of another level', () => {
    const be = new DryBackend(params);
    const a = be.encryptVec(new Float64Array(1), be.scale, 2);
    be.free(a);
    const b = be.encryptVec(new Float64Array(1), be.scale, 2);
    expect(be.tally.poolBytes).to.equal(ciphertextMemory(N, 2));
    const c = be.encryptVec(new Float64Array(1), be.scale, 1);
    be.free(b);
    be.free(c);
    expect(be.tally.poolBytes).to.equal(ciphertextMemory(N, 2) + ciphertextMemory(N, 1));
    expect(be.tally.liveBytes).to.equal(0);
  });

  it('a product keeps a three-polynomial allocation through relinearization and rescale', () => {
    const be = new DryBackend(params);
    const a = be.encryptVec(new Float64Array(1), be.scale, 2);
    const p = be.multiply(a, a);
    be.rescaleInPlace(p);
    expect(be.levelOf(p)).to.equal(1);
    // live data shrank with the rescale; the heap did not
    expect(be.tally.liveBytes).to.equal(ciphertextMemory(N, 2) + ciphertextMemory(N, 1));
    expect(be.tally.poolBytes).to.equal(ciphertextMemory(N, 2) + 1.5 * ciphertextMemory(N, 2));
    be.free(p);
    // the freed product's block is not one a level-1 ciphertext can take
    const q = be.encryptVec(new Float64Array(1), be.scale, 1);
    expect(be.tally.poolBytes).to.equal(2.5 * ciphertextMemory(N, 2) + ciphertextMemory(N, 1));
    [a, q].forEach((c) => be.free(c));
  });

  it('an encoded plaintext holds a top-level allocation after switching down (a constant is built at its level)', () => {
    const be = new DryBackend(params);
    const p = be.encode(new Float64Array(4), be.scale, 0);
    const k = be.encodeConst(2, be.scale, 0);
    expect(be.tally.poolBytes).to.equal(plaintextMemory(N, be.topLevel) + plaintextMemory(N, 0));
    be.freePlain(p);
    be.freePlain(k);
  });
});
