import { expect } from 'chai';
import { initBackend } from '../../src/train/backend.js';
import { predict } from '../../src/models/tf-interpreter.js';
import type { Graph } from '../../src/models/graph.js';
import { pruneWeights, type PruneMethod } from '../../src/train/prune.js';
import { argmaxRows, chain, maxAbsDiff, quad, randomInputs, randomWeights, tinyCnn } from './fixtures.js';
import { encryptedLogits } from './pipeline.js';
import { restoreFastestBackend } from '../helpers/backend.js';

/**
 * Pruned networks on real ciphertexts: pruning leaves many all-zero weights, rows and
 * diagonals, and SEAL refuses a product with an all-zero plaintext ('result ciphertext is
 * transparent'), so these runs check that the evaluator skips them, and that the pruned model
 * still agrees with its plaintext twin.
 */

function mlp(): Graph {
  return chain([6], 3, [
    ['dense1', { op: 'dense', units: 8, bias: true }],
    ['act1', quad],
    ['dense2', { op: 'dense', units: 6, bias: true }],
    ['act2', quad],
    ['dense3', { op: 'dense', units: 3, bias: true }],
  ]);
}

const cases: [string, () => Graph, PruneMethod, number, 'batch' | 'sample'][] = [
  ['MLP, HE-PEx 50%, batch packing', mlp, 'hepex', 0.5, 'batch'],
  ['MLP, magnitude 80% (scattered zeros), sample packing', mlp, 'magnitude', 0.8, 'sample'],
  ['CNN, HE-PEx 50%, sample packing', tinyCnn, 'hepex', 0.5, 'sample'],
  ['CNN, magnitude 70%, batch packing', tinyCnn, 'magnitude', 0.7, 'batch'],
];

describe('he: pruned networks under encryption', function () {
  // tests here force the cpu backend; later files in this mocha worker get the fastest back
  after(restoreFastestBackend);
  this.timeout(180000);
  before(async () => {
    await initBackend('cpu');
  });

  for (const [name, make, method, sparsity, packing] of cases) {
    it(name, async () => {
      const g = make();
      const r = pruneWeights(g, randomWeights(g, 21), { method, sparsity, tile: 1, expand: true });
      const count = packing === 'batch' ? 4 : 2;
      const x = randomInputs(r.graph, count, 21);
      const plain = predict(r.graph, r.weights, x, count);
      const { logits, server, client } = await encryptedLogits(r.graph, r.weights, x, count, packing);
      try {
        expect(maxAbsDiff(logits, plain)).to.be.below(5e-3);
        expect(argmaxRows(logits, g.classes)).to.deep.equal(argmaxRows(plain, g.classes));
      } finally {
        await server.close();
        client.delete();
      }
    });
  }
});
