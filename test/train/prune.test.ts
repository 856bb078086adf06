import { expect } from 'chai';
import { initBackend } from '../../src/train/backend.js';
import { predict } from '../../src/models/tf-interpreter.js';
import { type Graph, type WeightMap, weightKey } from '../../src/models/graph.js';
import { RecipeSchema } from '../../src/recipe/schema.js';
import { Run } from '../../src/train/loop.js';
import { checkPrunable, magnitudeMask, pruneWeights } from '../../src/train/prune.js';
import { decodeMask, encodeMask, holdPruneMask } from '../../src/train/prune-mask.js';
import { heCost } from '../../src/train/prune-cost.js';
import { saveCheckpoint, loadCheckpoint } from '../../src/train/checkpoint.js';
import { summarize } from '../../src/models/summary.js';
import { chain, maxAbsDiff, quad, randomInputs, randomWeights, tinyCnn } from '../he/fixtures.js';
import { tempDir } from '../helpers/tmp.js';
import { restoreFastestBackend } from '../helpers/backend.js';

/** A slightly wider MLP than the HE fixtures', so halving its hidden layers is meaningful. */
function mlp(): Graph {
  return chain([6], 3, [
    ['dense1', { op: 'dense', units: 8, bias: true }],
    ['bn1', { op: 'batchnorm', momentum: 0.9, epsilon: 1e-3 }],
    ['act1', quad],
    ['dense2', { op: 'dense', units: 6, bias: true }],
    ['act2', quad],
    ['dense3', { op: 'dense', units: 3, bias: true }],
  ]);
}

/** The original network with the removed units' outgoing weights zeroed: what pruning must equal. */
function zeroOutgoing(g: Graph, w: WeightMap, removed: Record<string, number[]>): WeightMap {
  const out: WeightMap = new Map([...w].map(([k, t]) => [k, { shape: [...t.shape], data: Float32Array.from(t.data) }]));
  const next: Record<string, string> = { dense1: 'dense2', dense2: 'dense3', conv1: 'conv2', conv2: 'dense1' };
  for (const [layer, units] of Object.entries(removed)) {
    const k = out.get(weightKey(next[layer], 'kernel'))!;
    const producer = g.nodes.find((n) => n.name === layer)!.layer;
    const C = producer.op === 'dense' ? producer.units : producer.op === 'conv2d' ? producer.filters : 0;
    if (k.shape.length === 2) {
      const cols = k.shape[1];
      for (let r = 0; r < k.shape[0]; r++) if (units.includes(r % C)) k.data.fill(0, r * cols, (r + 1) * cols);
    } else {
      const [kh, kw, cin, cout] = k.shape;
      for (let p = 0; p < kh * kw; p++) for (const c of units) k.data.fill(0, (p * cin + c) * cout, (p * cin + c + 1) * cout);
    }
  }
  return out;
}

describe('train/prune: HE-aware pruning', function () {
  // tests here force the cpu backend; later files in this mocha worker get the fastest back
  after(restoreFastestBackend);
  this.timeout(60000);
  before(async () => {
    await initBackend('cpu');
  });

  it('HE-PEx removes whole units, and the smaller graph computes what the masked original does', () => {
    for (const g of [mlp(), tinyCnn()]) {
      const w = randomWeights(g, 3);
      const r = pruneWeights(g, w, { method: 'hepex', sparsity: 0.5, tile: 1, expand: true });
      const first = Object.values(r.record.units)[0];
      expect(first.after).to.equal(first.before / 2);
      const x = randomInputs(g, 5, 3);
      const twin = predict(g, zeroOutgoing(g, w, r.record.removed), x, 5);
      expect(maxAbsDiff(predict(r.graph, r.weights, x, 5), twin)).to.be.below(1e-4);
    }
  });

  it('pruning removes whole ciphertexts under both packings (HE-PEx) but not under plain magnitude pruning', () => {
    const g = mlp();
    const w = randomWeights(g, 4);
    const base = heCost(g, w, 64);
    const hepex = heCost(...graphWeights(pruneWeights(g, w, { method: 'hepex', sparsity: 0.5, tile: 1, expand: true })), 64);
    const mag = heCost(...graphWeights(pruneWeights(g, w, { method: 'magnitude', sparsity: 0.5, tile: 1, expand: true })), 64);
    // batch packing: each hidden unit is a ciphertext before and after its square
    expect(base.batchCiphertexts - hepex.batchCiphertexts).to.equal(2 * (4 + 3));
    expect(hepex.batchCtMults).to.be.below(base.batchCtMults);
    expect(hepex.sampleDiagonals!).to.be.below(base.sampleDiagonals!);
    // magnitude: half the products go, but every unit (ciphertext) stays
    expect(mag.batchCiphertexts).to.equal(base.batchCiphertexts);
    expect(mag.batchPtMults).to.be.at.most(Math.ceil(base.batchPtMults / 2) + 3);
  });

  it('prunes in whole tiles: 8 units, tile 4, sparsity 0.6 removes one tile', () => {
    const g = mlp();
    const r = pruneWeights(g, randomWeights(g, 5), { method: 'hepex', sparsity: 0.6, tile: 4, expand: true });
    expect(r.record.units.dense1).to.deep.equal({ before: 8, after: 4 });
    // 6 units, tile 4: 0.6 * 6 = 3.6 rounds down to no whole tile
    expect(r.record.units.dense2).to.deep.equal({ before: 6, after: 6 });
  });

  it('magnitude pruning zeroes the smallest weights of each kernel', () => {
    const m = magnitudeMask(Float32Array.from([0.1, -3, 0.2, 2, -0.05, 1]), 0.5);
    expect([...m]).to.deep.equal([0, 1, 0, 1, 0, 1]);
    const g = mlp();
    const r = pruneWeights(g, randomWeights(g, 6), { method: 'magnitude', sparsity: 0.5, tile: 1, expand: true });
    // a unit left with no outgoing weight is removed with its zeros, so slightly below 0.5
    expect(r.record.weight_sparsity).to.be.within(0.4, 0.5);
    expect(Object.keys(r.record.masks)).to.have.length(3);
  });

  it('holds the mask through fine-tuning, and the checkpoint keeps it (prune.json)', async () => {
    const g = mlp();
    const r = pruneWeights(g, randomWeights(g, 7), { method: 'magnitude', sparsity: 0.5, tile: 1, expand: true });
    const recipe = RecipeSchema.parse({
      name: 'prune-test',
      data: { source: 'csv', path: 'x.csv', label: 'y' },
      model: { kind: 'mlp', hidden: [8, 6] },
      train: { epochs: 1, batch: 8, optimizer: { kind: 'adam', lr: 0.05 } },
    });
    const run = new Run(r.graph, r.weights, recipe, 9001);
    try {
      holdPruneMask(run, r.record);
      const n = 32;
      const x = randomInputs(g, n, 8);
      const y = Int32Array.from({ length: n }, (_, i) => i % 3);
      await run.trainEpoch({ x, y, count: n } as never, 0, 0.05, () => {});
      const after = run.weightMap();
      for (const [key, mask] of r.masks) {
        const d = after.get(key)!.data;
        let moved = 0;
        for (let i = 0; i < mask.length; i++) {
          if (!mask[i]) expect(d[i]).to.equal(0);
          else if (d[i] !== r.weights.get(key)!.data[i]) moved++;
        }
        expect(moved).to.be.above(0);
      }
      const tmp = tempDir('hepoly-prune-');
      const dir = `${tmp.path}/ckpt`;
      saveCheckpoint(dir, {
        graph: r.graph,
        weights: after,
        recipe,
        preprocess: { labels: ['a', 'b', 'c'], inputShape: [6] } as never,
        ranges: null,
        metrics: [],
        state: { epochs_done: 1, complete: true, backend: 'cpu', seed: 42 },
        optimizer: null,
        summary: summarize(r.graph, null),
        prune: r.record,
      });
      const back = loadCheckpoint(dir).prune as typeof r.record;
      expect(back.masks).to.deep.equal(r.record.masks);
      const m = r.masks.get(weightKey('dense2', 'kernel'))!;
      expect([...decodeMask(encodeMask(m), m.length)]).to.deep.equal([...m]);
      tmp.cleanup();
    } finally {
      run.dispose();
    }
  });

  it('refuses what cannot be pruned, naming the key', () => {
    const spec = { method: 'hepex' as const, sparsity: 0.5, tile: 1, expand: true };
    const vit = RecipeSchema.parse({ name: 'v', data: { source: 'csv', path: 'x.csv', label: 'y' }, model: { kind: 'transformer', patch: 7 } }).model;
    expect(() => checkPrunable(vit, spec, 'r.yaml')).to.throw(/r\.yaml: prune: a transformer model cannot be pruned/);
    const base = { name: 'p', data: { source: 'csv', path: 'x.csv', label: 'y' }, model: { kind: 'mlp' } };
    expect(RecipeSchema.safeParse({ ...base, prune: { sparsity: 1 } }).success).to.equal(false);
    expect(RecipeSchema.safeParse({ ...base, prune: { sparsity: -0.1 } }).success).to.equal(false);
    expect(RecipeSchema.safeParse({ ...base, prune: { sparsity: 0.5, target: 'weights' } }).success).to.equal(false);
    expect(RecipeSchema.parse({ ...base, prune: { sparsity: 0.5 } }).prune).to.deep.include({ target: 'ciphertexts', permute: true, expand: true });
  });
});

function graphWeights(r: { graph: Graph; weights: WeightMap }): [Graph, WeightMap] {
  return [r.graph, r.weights];
}
