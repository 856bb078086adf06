import { expect } from 'chai';
import { HEClient } from '../../src/he/client.js';
import { RecyclingSealBackend } from '../../src/he/recycling-backend.js';

/** A server backend whose SEAL instance is swapped for a fresh one: ciphertexts survive, misuse is caught. */
describe('RecyclingSealBackend', function () {
  this.timeout(120000);
  const params = { polyModulusDegree: 8192, coeffModulusBits: [50, 30, 30, 50], scaleBits: 30 };

  it('keeps every live ciphertext across a recycle (values, levels) and computes on after it', async () => {
    const client = await HEClient.create(params);
    const be = await RecyclingSealBackend.create(client.publicBundle([]));
    try {
      const [a, b] = client.encrypt([Float64Array.from([1.5, -2, 3]), Float64Array.from([2, 0.5, -1])]).map((x) => be.deserialize(x));
      const prod = be.multiplyNoRelin!(a, b);
      be.relinearizeInPlace!(prod);
      be.rescaleInPlace(prod);
      be.free(b);
      expect(be.liveCiphertexts).to.equal(2);
      expect(await be.recycleIfGrown(2 ** 40)).to.equal(false);
      expect(await be.recycleIfGrown(0)).to.equal(true);
      expect(be.recycles).to.equal(1);
      expect(be.levelOf(prod)).to.equal(be.levelOf(a) - 1);
      // the handles now point into the new instance and still compute
      const sum = be.add(a, a);
      const got = client.decrypt(be.serialize(sum));
      const p = client.decrypt(be.serialize(prod));
      [3, -4, 6].forEach((v, i) => expect(got[i]).to.be.closeTo(v, 1e-4));
      [3, -1, -3].forEach((v, i) => expect(p[i]).to.be.closeTo(v, 1e-3));
      [a, prod, sum].forEach((c) => be.free(c));
      expect(() => be.free(a)).to.throw(/freed twice/);
    } finally {
      be.delete();
      client.delete();
    }
  });

  it('refuses to recycle while a plaintext is alive (it would point into the dropped heap)', async () => {
    const client = await HEClient.create(params);
    const be = await RecyclingSealBackend.create(client.publicBundle([]));
    const p = be.encodeConst(2, be.scale, be.topLevel);
    let err: unknown = null;
    try {
      await be.recycle();
    } catch (e) {
      err = e;
    }
    expect((err as Error).message).to.match(/1 plaintexts alive across a heap recycle/);
    be.freePlain(p);
    await be.recycle();
    be.delete();
    client.delete();
  });
});
