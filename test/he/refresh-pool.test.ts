import { expect } from 'chai';
import { HEClient } from '../../src/he/client.js';
import { TEST_PARAMS } from './pipeline.js';

/**
 * The client's refresh threads: what comes back decrypts (with the client's own key) to what
 * went in, at the top level again, in order, however the ciphertexts split over the threads.
 */
describe('he/refresh-pool: --refresh client on the client\'s own threads', function () {
  this.timeout(120_000);

  it('re-encrypts every ciphertext at the top level, in order, hands back the decrypted slots when asked, and refuses bytes that are no ciphertext', async () => {
    const client = await HEClient.create(TEST_PARAMS);
    const pool = client.refreshPool(2);
    try {
      const vectors = Array.from({ length: 5 }, (_, k) => Float64Array.from({ length: client.slots }, (_, i) => Math.sin(k + i / 97)));
      const cts = client.encrypt(vectors);
      const top = client.describe(cts[0]).level;
      const { fresh, values } = await pool.refresh(cts, true);
      expect(fresh.length).to.equal(5);
      expect(values!.length).to.equal(5);
      fresh.forEach((b, k) => {
        // a new encryption, not the bytes sent
        expect(Buffer.from(b).equals(Buffer.from(cts[k]))).to.equal(false);
        expect(client.describe(b).level).to.equal(top);
        const back = client.decrypt(b);
        let err = 0;
        for (let i = 0; i < client.slots; i++) err = Math.max(err, Math.abs(back[i] - vectors[k][i]), Math.abs(values![k][i] - vectors[k][i]));
        expect(err).to.be.below(1e-4);
      });
      const plain = await pool.refresh(cts.slice(0, 1));
      expect(plain.values).to.equal(null);
      expect(plain.fresh.length).to.equal(1);
      // bytes that are no ciphertext: one clear error, not a hang, and the pool still serves
      let err: Error | null = null;
      await pool.refresh([new Uint8Array([1, 2, 3])]).catch((e: Error) => (err = e));
      expect(err).to.not.equal(null);
      expect(err!.message).to.match(/client refresh thread/);
      expect((await pool.refresh(cts.slice(0, 2))).fresh.length).to.equal(2);
    } finally {
      await pool.close();
      client.delete();
    }
  });
});
