import { expect } from 'chai';
import { Worker } from 'node:worker_threads';
import { loadSeal, CkksContext } from '../../src/he/seal.js';
import { initBackend } from '../../src/train/backend.js';
import { predict } from '../../src/models/tf-interpreter.js';
import { argmaxRows, maxAbsDiff, randomInputs, randomWeights, tinyCnn } from './fixtures.js';
import { TEST_PARAMS, encryptedLogits } from './pipeline.js';

/**
 * Every object reachable from `root` (own properties, arrays, maps, sets). Worker handles are
 * not walked: they are threads, whose only inputs are the messages checked below.
 */
function reachable(root: unknown): unknown[] {
  const seen = new Set<unknown>();
  const stack = [root];
  while (stack.length) {
    const v = stack.pop();
    if (v === null || typeof v !== 'object' || seen.has(v)) continue;
    seen.add(v);
    if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer || v instanceof SharedArrayBuffer || v instanceof Worker) continue;
    if (v instanceof Map) for (const [k, x] of v) stack.push(k, x);
    else if (v instanceof Set) for (const x of v) stack.push(x);
    else for (const k of Reflect.ownKeys(v)) stack.push((v as Record<string | symbol, unknown>)[k]);
  }
  return [...seen];
}

describe('he: the server cannot decrypt (secret key separation)', function () {
  this.timeout(180000);

  it('holds no SEAL object, received only bytes, and none of those bytes is a secret key', async () => {
    await initBackend('cpu');
    const g = tinyCnn();
    const w = randomWeights(g, 3);
    const x = randomInputs(g, 2, 3);
    const { logits, server, client } = await encryptedLogits(g, w, x, 2, 'sample');
    try {
      // it did evaluate: the decrypted results are the model's
      const plain = predict(g, w, x, 2);
      expect(maxAbsDiff(logits, plain)).to.be.below(5e-3);
      expect(argmaxRows(logits, 3)).to.deep.equal(argmaxRows(plain, 3));

      // 1. no SEAL wrapper at all on the server's side of the API (the secret key would be one)
      const sealObjects = reachable(server).filter((o) => o && typeof o === 'object' && 'instance' in (o as object));
      expect(sealObjects).to.have.length(0);

      // 2. its workers were initialized with public material only
      expect(server.initMessageFields().sort()).to.deep.equal(
        ['galoisKeys', 'keepAll', 'memoryBudget', 'mode', 'packing', 'params', 'program', 'publicKey', 'relinKeys'].sort(),
      );

      // 3. every byte string it received (keys and ciphertexts) fails to load as a secret key
      const kinds = new Set(server.received.map((r) => r.what));
      expect([...kinds].sort()).to.deep.equal(['Galois keys', 'input ciphertext', 'public key', 'relinearization keys']);
      const seal = await loadSeal();
      const ctx = CkksContext.create(seal, TEST_PARAMS);
      try {
        for (const { what, bytes } of server.received) {
          const sk = seal.SecretKey();
          let loaded = true;
          try {
            sk.loadArray(ctx.context, bytes);
          } catch {
            loaded = false;
          }
          sk.delete();
          expect(loaded, `${what} (${bytes.length} bytes) deserialized as a secret key`).to.equal(false);
        }
      } finally {
        ctx.delete();
      }

      // 4. the client's secret key is a true private field: no property or method hands it out
      const surface = [...Object.getOwnPropertyNames(client), ...Object.getOwnPropertyNames(Object.getPrototypeOf(client))];
      expect(surface.filter((k) => /secret|keygen/i.test(k))).to.deep.equal([]);
      expect(Object.keys(client.publicBundle([])).sort()).to.deep.equal(['galoisKeys', 'params', 'publicKey', 'relinKeys', 'rotationSteps']);
    } finally {
      await server.close();
      client.delete();
    }
  });
});
