import { expect } from 'chai';
import { HEClient } from '../../src/he/client.js';
import { loadEvaluationKeys, deleteEvaluationKeys } from '../../src/he/keys.js';
import { SealBackend } from '../../src/he/seal-backend.js';

/**
 * A weight below the scale's resolution encodes to an all-zero plaintext, and SEAL refuses to
 * multiply by one ('result ciphertext is transparent'): the backend answers with an encryption
 * of zeros at the product's level and scale instead (a Dirac ResNet at scale 2^25 has such weights).
 */
describe('SealBackend: products with weights that round to zero', function () {
  this.timeout(60000);

  it('mulConst, mulPlain and their accumulating forms give zeros at the right level and scale, not an exception', async () => {
    const client = await HEClient.create({ polyModulusDegree: 4096, coeffModulusBits: [42, 25, 42], scaleBits: 25 });
    const keys = loadEvaluationKeys(client.ctx, client.publicBundle([]));
    const be = new SealBackend(client.ctx, keys);
    try {
      const x = be.deserialize(client.encrypt([Float64Array.from([3, -2, 5])])[0]);
      const q = be.prime(be.levelOf(x));
      const tiny = 1e-9; // * 2^25 rounds to 0
      const normal = be.mulConst(x, 0.5, q);
      const z = be.mulConst(x, tiny, q);
      expect(be.levelOf(z)).to.equal(be.levelOf(normal));
      expect(be.scaleOf(z)).to.equal(be.scaleOf(normal));
      be.mulConstAddInPlace(normal, x, tiny, q);
      const zeroPlain = be.encode(Float64Array.from([tiny, -tiny]), q, be.levelOf(x));
      const zp = be.mulPlain(x, zeroPlain);
      be.mulPlainAddInPlace(normal, x, zeroPlain);
      for (const c of [z, zp]) be.rescaleInPlace(c);
      be.rescaleInPlace(normal);
      const half = client.decrypt(be.serialize(normal));
      [1.5, -1, 2.5].forEach((v, i) => expect(half[i]).to.be.closeTo(v, 1e-3));
      for (const c of [z, zp]) {
        const got = client.decrypt(be.serialize(c));
        for (let i = 0; i < 3; i++) expect(Math.abs(got[i])).to.be.below(1e-3);
      }
      [x, normal, z, zp].forEach((c) => be.free(c));
      be.freePlain(zeroPlain);
    } finally {
      be.delete();
      deleteEvaluationKeys(keys);
      client.delete();
    }
  });
});
