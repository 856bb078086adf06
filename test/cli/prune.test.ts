import { expect } from 'chai';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import type { Graph, WeightMap } from '../../src/models/graph.js';
import { weightKey } from '../../src/models/graph.js';

/** Units of each dense layer of a checkpoint's graph, by name. */
function denseUnits(g: Graph): Record<string, number> {
  return Object.fromEntries(g.nodes.flatMap((n) => (n.layer.op === 'dense' ? [[n.name, n.layer.units]] : [])));
}

/** Fraction of exact zeros over every dense kernel. */
function kernelSparsity(g: Graph, w: WeightMap): number {
  let zeros = 0;
  let total = 0;
  for (const n of g.nodes) {
    if (n.layer.op !== 'dense') continue;
    const k = w.get(weightKey(n.name, 'kernel'))!.data;
    for (const v of k) if (v === 0) zeros++;
    total += k.length;
  }
  return zeros / total;
}

describe('hepoly prune (CLI, end to end): the written checkpoint has the sparsity, and eval reads it', function () {
  this.timeout(300000);
  const tmp = tempDir('hepoly-prune-cli-');
  const base = join(tmp.path, 'qs');
  after(() => tmp.cleanup());

  before(() => {
    const r = hepoly(['train', 'recipes/quickstart.yaml', '--set', 'train.epochs=3', '--set', 'model.hidden=[8, 4]', '--out', base]);
    expect(r.code, r.stderr).to.equal(0);
  });

  it('--method hepex --sparsity 0.5 removes half the units of each hidden layer; eval on the result agrees with the reported accuracy', () => {
    const out = join(tmp.path, 'hepex');
    const r = hepoly(['prune', base, '--sparsity', '0.5', '--method', 'hepex', '--epochs', '1', '--out', out, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json, r.stdout).to.include({ method: 'hepex', sparsity: 0.5, split: 'validation' });
    const ck = loadCheckpoint(out);
    expect(denseUnits(loadCheckpoint(base).graph)).to.deep.equal({ dense1: 8, dense2: 4, logits: 2 });
    expect(denseUnits(ck.graph)).to.deep.equal({ dense1: 4, dense2: 2, logits: 2 });
    const e = hepoly(['eval', out, '--json']);
    expect(e.code, e.stderr).to.equal(0);
    expect(e.json).to.include({ split: 'validation' });
    expect(e.json!.accuracy as number).to.be.closeTo(r.json!.accuracy_finetuned as number, 1e-6);
    expect(e.json!.accuracy as number).to.be.above(0.6);
  });

  it('--method magnitude --sparsity 0.6 zeros the smallest weights and keeps them zero through fine-tuning; default output name', () => {
    const r = hepoly(['prune', base, '--sparsity', '0.6', '--method', 'magnitude', '--epochs', '2', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const out = `${base}-magnitude-60`;
    expect(existsSync(join(out, 'weights.bin')), out).to.equal(true);
    const ck = loadCheckpoint(out);
    // the zeros written are the ones reported: the mask held through 2 epochs of fine-tuning
    // (units left with no weights at all are dropped, so the fraction is below the 0.6 asked)
    expect(kernelSparsity(ck.graph, ck.weights)).to.be.closeTo(r.json!.weight_sparsity as number, 1e-9);
    expect(r.json!.weight_sparsity as number).to.be.above(0.5);
    const e = hepoly(['eval', out, '--json']);
    expect(e.code, e.stderr).to.equal(0);
    expect(e.json!.accuracy as number).to.be.closeTo(r.json!.accuracy_finetuned as number, 1e-6);
  });

  it('refuses a sparsity outside [0, 1) with one error line naming --sparsity, and writes nothing', () => {
    const out = join(tmp.path, 'bad');
    const r = hepoly(['prune', base, '--sparsity', '1.5', '--out', out]);
    expect(r.code).to.not.equal(0);
    expect(r.stderr).to.match(/error: .*--sparsity/);
    expect(existsSync(out)).to.equal(false);
  });
});
