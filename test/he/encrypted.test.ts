import { expect } from 'chai';
import { initBackend } from '../../src/train/backend.js';
import { predict } from '../../src/models/tf-interpreter.js';
import type { Graph } from '../../src/models/graph.js';
import { argmaxRows, chain, maxAbsDiff, quad, randomInputs, randomWeights, tinyCnn, tinyMlp } from './fixtures.js';
import { encryptedLogits } from './pipeline.js';
import { restoreFastestBackend } from '../helpers/backend.js';

/**
 * The HE path end to end on real ciphertexts: encrypt on the client, evaluate on the server's
 * worker threads (which see bytes only), decrypt, and compare with the trainer's plaintext
 * interpreter. Small parameters and tiny models keep each case to seconds.
 */

const strided: Graph = chain([7, 7, 2], 3, [
  ['conv1', { op: 'conv2d', filters: 3, kernel: 3, stride: 2, padding: 'same', bias: true }],
  ['bn1', { op: 'batchnorm', momentum: 0.9, epsilon: 1e-3 }],
  ['act1', { op: 'activation', activation: { kind: 'square' } }],
  ['conv2', { op: 'conv2d', filters: 4, kernel: 2, stride: 1, padding: 'valid', bias: false }],
  ['act2', quad],
  ['gap', { op: 'global_avgpool' }],
  ['dense1', { op: 'dense', units: 3, bias: true }],
]);

const cases: [string, Graph, 'batch' | 'sample'][] = [
  ['tiny MLP, batch packing', tinyMlp(), 'batch'],
  ['tiny MLP, sample packing', tinyMlp(), 'sample'],
  ['tiny CNN (conv same, quad, avgpool), batch packing', tinyCnn(), 'batch'],
  ['tiny CNN (conv same, quad, avgpool), sample packing', tinyCnn(), 'sample'],
  ['CNN with stride 2, valid padding, batchnorm, global pool, sample packing', strided, 'sample'],
];

describe('he: encrypted inference matches the plaintext model', function () {
  // tests here force the cpu backend; later files in this mocha worker get the fastest back
  after(restoreFastestBackend);
  this.timeout(180000);
  before(async () => {
    await initBackend('cpu');
  });

  for (const [name, g, packing] of cases) {
    it(name, async () => {
      const w = randomWeights(g, 11);
      const count = packing === 'batch' ? 6 : 3;
      const x = randomInputs(g, count, 11);
      const plain = predict(g, w, x, count);
      const { logits, server, client } = await encryptedLogits(g, w, x, count, packing);
      try {
        // the decrypted logits are the plaintext model's, up to CKKS noise at scale 2^27
        expect(maxAbsDiff(logits, plain)).to.be.below(5e-3);
        expect(argmaxRows(logits, g.classes)).to.deep.equal(argmaxRows(plain, g.classes));
        // and they were computed: the server did real ciphertext work of the packing's kind
        if (packing === 'batch') expect(server.counts.rotations).to.equal(0);
        else expect(server.counts.rotations).to.be.above(0);
        expect(server.counts.ctCtMults).to.be.above(0);
        expect(server.counts.ptMults).to.be.above(0);
      } finally {
        await server.close();
        client.delete();
      }
    });
  }

  it('batch packing at scale 2^40 (N=16384): bias constants above 64 bits encode exactly, logits within 1e-5', async () => {
    const g = tinyMlp();
    const w = randomWeights(g, 12);
    const x = randomInputs(g, 6, 12);
    const plain = predict(g, w, x, 6);
    // biases are added to accumulators at scale 2^40 * q ~ 2^80, past a 64-bit integer
    const params = { polyModulusDegree: 16384, coeffModulusBits: [60, 40, 40, 40, 40, 40, 60], scaleBits: 40 };
    const { logits, server, client } = await encryptedLogits(g, w, x, 6, 'batch', params);
    try {
      // float32 plaintext vs float64 CKKS at 2^40: far tighter than the 5e-3 of scale 2^27
      expect(maxAbsDiff(logits, plain)).to.be.below(1e-5);
    } finally {
      await server.close();
      client.delete();
    }
  });

  it('batch packing replaces grown workers between stages and still agrees', async () => {
    const g = tinyCnn();
    const w = randomWeights(g, 13);
    const x = randomInputs(g, 4, 13);
    const plain = predict(g, w, x, 4);
    const { logits, server, client } = await encryptedLogits(g, w, x, 4, 'batch', undefined, { recycleHeapBytes: 1 });
    try {
      expect(server.recycledWorkers).to.be.above(0);
      expect(maxAbsDiff(logits, plain)).to.be.below(5e-3);
      expect(argmaxRows(logits, g.classes)).to.deep.equal(argmaxRows(plain, g.classes));
    } finally {
      await server.close();
      client.delete();
    }
  });
});
