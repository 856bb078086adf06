import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { initBackend } from '../../src/train/backend.js';
import { outOfRangeFraction, rangePenalty } from '../../src/train/losses.js';
import { buildGraph } from '../../src/models/build.js';
import { inferShapes, INPUT } from '../../src/models/graph.js';
import { initWeights, predict } from '../../src/models/tf-interpreter.js';
import { foldForInference } from '../../src/models/fold.js';
import { RecipeSchema } from '../../src/recipe/schema.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { expectAllClose } from '../helpers/close.js';

const resnet = (skip: string, depth = 8) =>
  RecipeSchema.parse({ name: 'r', data: { source: 'csv', path: 'x', label: 'y' }, model: { kind: 'resnet', depth, widths: [4, 8, 8], skip } }).model;

describe('range-aware training and polynomial ResNets', function () {
  this.timeout(300000);
  const tmp = tempDir();
  before(async () => {
    await initBackend();
  });
  after(() => tmp.cleanup());

  it('the range penalty is zero inside [-B, B] and grows quadratically outside', () => {
    expect(rangePenalty(tf.tensor1d([-2, -0.5, 0, 1.9, 2]), 2).dataSync()[0]).to.equal(0);
    // |x| - B = 1 and 3 for two of four values: mean of (1, 9, 0, 0) = 2.5
    expect(rangePenalty(tf.tensor1d([3, -5, 0, 1]), 2).dataSync()[0]).to.be.closeTo(2.5, 1e-6);
    expect(outOfRangeFraction(tf.tensor1d([3, -5, 0, 1]), 2).dataSync()[0]).to.be.closeTo(0.5, 1e-6);
  });

  it('range training logs the out-of-range fraction per activation layer and shrinks it', () => {
    const base = ['train', 'recipes/quickstart.yaml', '--set', 'train.epochs=6', '--set', 'range.bound=1.5'];
    const free = join(tmp.path, 'free');
    const reg = join(tmp.path, 'reg');
    expect(hepoly([...base, '--set', 'range.weight=0', '--out', free]).code).to.equal(0);
    expect(hepoly([...base, '--set', 'range.weight=1', '--out', reg]).code).to.equal(0);
    const last = (dir: string) => {
      const [head, ...rows] = readFileSync(join(dir, 'metrics.csv'), 'utf8').trim().split('\n');
      const cols = head.split(',');
      const row = rows[rows.length - 1].split(',').map(Number);
      return Object.fromEntries(cols.map((c, i) => [c, row[i]]));
    };
    const f = last(free);
    const r = last(reg);
    expect(f).to.have.property('out_of_range_act1');
    expect(f).to.have.property('out_of_range_act2');
    expect(r.out_of_range_act1 + r.out_of_range_act2).to.be.lessThan(f.out_of_range_act1 + f.out_of_range_act2);
  });

  it('resnet graphs: standard has adds, dirac has none, shared-source adds the stage source', () => {
    const shapes = { standard: buildGraph(resnet('standard'), [8, 8, 3], 10), dirac: buildGraph(resnet('dirac'), [8, 8, 3], 10), shared: buildGraph(resnet('shared-source', 14), [8, 8, 3], 10) };
    const adds = (g: typeof shapes.standard) => g.nodes.filter((n) => n.layer.op === 'add');
    expect(adds(shapes.standard)).to.have.length(3);
    expect(adds(shapes.dirac)).to.have.length(0);
    expect(shapes.dirac.nodes.filter((n) => n.layer.op === 'conv2d' && n.layer.dirac).length).to.be.greaterThan(0);
    // depth 14: 2 blocks per stage; the second block of stage 1 adds the stage input (stem output), not block 1's output
    const s1b2 = adds(shapes.shared).find((n) => n.name === 's1b2_add')!;
    expect(s1b2.inputs[1]).to.equal('stem_act');
    expect(inferShapes(shapes.standard).get('logits')).to.deep.equal([10]);
    expect(shapes.standard.nodes[0].inputs).to.deep.equal([INPUT]);
  });

  it('the Dirac fold gives the same outputs as the unfolded form', () => {
    const graph = buildGraph(resnet('dirac'), [8, 8, 3], 10);
    const weights = initWeights(graph, 3);
    // make alpha non-trivial so the fold has something to fold
    for (const [k, w] of weights) if (k.endsWith('/alpha')) w.data.forEach((_, i) => (w.data[i] = 0.5 + 0.1 * i));
    const folded = foldForInference(graph, weights);
    expect([...folded.weights.keys()].some((k) => k.endsWith('/alpha'))).to.equal(false);
    expect(folded.graph.nodes.some((n) => n.layer.op === 'conv2d' && n.layer.dirac)).to.equal(false);
    const x = Float32Array.from({ length: 2 * 8 * 8 * 3 }, (_, i) => Math.sin(i));
    expectAllClose(predict(folded.graph, folded.weights, x, 2), predict(graph, weights, x, 2), { atol: 1e-4, rtol: 1e-4 });
  });

  it('a model that trains but overflows at inference (moving statistics, raw pixels): the moving statistics are re-estimated, and when it still overflows it exits 3 naming what; the checkpoint and its report stay readable', () => {
    const dir = join(tmp.path, 'overflow');
    const r = hepoly([
      'train', 'recipes/fmnist-cnn.yaml', '--out', dir,
      '--set', 'model={kind: resnet, depth: 20, widths: [4, 4, 4], skip: standard}', '--set', 'data.normalize={scale: 1, shift: 0}',
      '--set', 'data.limit=64', '--set', 'data.test_limit=32', '--set', 'data.split.validation=0.01', '--set', 'train.epochs=1', '--set', 'train.batch=32',
    ]);
    expect(r.code, r.stderr).to.equal(3);
    const all = r.stdout + r.stderr;
    expect(all).to.match(/the trained model overflowed at inference \(the input of s\d+b\d+_act\d is not finite on the training set\): re-estimated the moving statistics of 30 batchnorm layers on 64 training samples/);
    expect(r.stderr).to.match(/recipes\/fmnist-cnn\.yaml: the trained model overflows at inference .*is not finite, also after re-estimating the moving statistics/);
    expect(r.stderr).to.include('data.normalize');
    // the metrics' last validation figures are those of the re-estimated checkpoint
    const ckpt = loadCheckpoint(dir);
    expect(Number.isNaN(ckpt.metrics[ckpt.metrics.length - 1].val_loss)).to.equal(true);
    expect(Object.values(ckpt.ranges!.activations).every((a) => typeof a.max === 'number')).to.equal(true);
    expect(readFileSync(join(dir, 'report', 'report.html'), 'utf8')).to.include('<svg');
  });

  for (const skip of ['standard', 'dirac', 'shared-source']) {
    it(`a ${skip} resnet recipe trains a few steps on a small slice`, () => {
      const r = hepoly([
        'train', 'recipes/fmnist-cnn.yaml', '--out', join(tmp.path, `rn-${skip}`), '--json',
        '--set', `model={kind: resnet, depth: 8, widths: [4, 8, 8], skip: ${skip}}`,
        '--set', 'data.limit=192', '--set', 'data.test_limit=32', '--set', 'train.epochs=3', '--set', 'train.batch=32',
      ]);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.json!.epochs).to.equal(3);
      const losses = readFileSync(join(tmp.path, `rn-${skip}`, 'metrics.csv'), 'utf8').trim().split('\n').slice(1).map((l) => Number(l.split(',')[1]));
      expect(losses[2], 'training loss decreases').to.be.lessThan(losses[0]);
    });
  }
});
