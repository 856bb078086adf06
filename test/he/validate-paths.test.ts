import { expect } from 'chai';
import { join } from 'node:path';
import { loadRecipe } from '../../src/recipe/load.js';
import { train } from '../../src/train/loop.js';
import { validate } from '../../src/he/validate.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * he-validate paths no other test runs: batch packing with --trace (the server keeps every
 * tensor, keepAll), and --params auto with --refresh client on a CNN (the search over rings
 * and cut programs, chooseWithRefresh). A tiny trained CNN on the breast-cancer CSV read as
 * 5x6 images.
 */

const CNN = [
  'data.shape=[5, 6, 1]',
  'model={kind: cnn, activation: {kind: quad}, layers: [{type: conv, filters: 2, kernel: 3, stride: 1, padding: same}, {type: activation}, {type: conv, filters: 2, kernel: 3, stride: 2, padding: same}, {type: activation}, {type: flatten}, {type: dense}]}',
  'train.epochs=2',
];

describe('he/validate: batch --trace and --params auto --refresh client on a CNN', function () {
  this.timeout(600000);
  const tmp = tempDir('hepoly-he-paths-');
  let ckpt = '';
  before(async () => {
    const { recipe } = loadRecipe('recipes/quickstart.yaml', CNN);
    ckpt = join(tmp.path, 'cnn');
    await train({ recipe, recipeFile: 'quickstart.yaml', outDir: ckpt, callbacks: {} });
  });
  after(() => tmp.cleanup());

  it('batch packing with --trace on SEAL: every traced layer (the server kept them all) agrees with the plaintext program', async () => {
    const r = await validate({ checkpoint: ckpt, samples: 3, packing: 'batch', trace: true, workers: 2 });
    expect(r.packing).to.equal('batch');
    expect(r.agreement).to.equal(1);
    // conv1, its square, conv2, its square, the logits: one traced tensor per materialized step at least
    expect(r.layerErrors!.length).to.be.at.least(5);
    for (const e of r.layerErrors!) {
      expect(e.maxAbsValue, e.label).to.be.above(0);
      expect(e.maxAbsError, e.label).to.be.below(1e-2 * Math.max(1, e.maxAbsValue));
    }
    expect(new Set(r.layerErrors!.map((e) => e.level)).size, 'the traced tensors sit on different levels').to.be.above(2);
  });

  it('--params auto --refresh client on a CNN chooses among rings and cut programs, says why, and agrees on SEAL', async () => {
    const lines: string[] = [];
    const r = await validate({ checkpoint: ckpt, samples: 2, packing: 'sample', refresh: 'client', workers: 2, log: (l) => lines.push(l) });
    const why = lines.find((l) => l.startsWith('--refresh client: '));
    expect(why, lines.join('\n')).to.not.equal(undefined);
    // the search cut the CNN into segments for the small rings and weighed them (here the uncut N=8192 wins)
    expect(why).to.match(/N=\d+: [1-9]\d* refreshes/);
    expect(r.refreshes, 'refreshes are allowed and counted').to.not.equal(null);
    expect(r.packing).to.equal('sample');
    expect(r.agreement).to.equal(1);
    expect(r.maxAbsError).to.be.below(1e-2 * Math.max(1, r.logitRange));
    expect(r.params.securityBits).to.equal(128);
    // the chosen chain holds the program it runs: the whole depth, or the segments between refreshes
    expect(r.params.levels).to.be.at.least(r.refreshes!.perPass > 0 ? 1 : r.depth);
  });
});
