import { expect } from 'chai';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';

/** metrics.csv without the timing columns, which legitimately differ between runs */
function metricsWithoutTiming(dir: string): string[][] {
  const [head, ...rows] = readFileSync(join(dir, 'metrics.csv'), 'utf8').trim().split('\n').map((l) => l.split(','));
  const keep = head.map((h, i) => (h === 'samples_per_s' || h === 'seconds' ? -1 : i)).filter((i) => i >= 0);
  return [head, ...rows].map((r) => keep.map((i) => r[i]));
}

describe('hepoly train / eval / summary (end to end)', function () {
  this.timeout(300000);
  const tmp = tempDir();
  after(() => tmp.cleanup());
  const out = join(tmp.path, 'qs');

  it('trains the quickstart into a checkpoint and reports JSON', () => {
    const r = hepoly(['train', 'recipes/quickstart.yaml', '--set', 'train.epochs=6', '--out', out, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout.split('\n')[0]).to.match(/^backend: (wasm|cpu|tensorflow)/);
    expect(r.stdout).to.match(/epoch 6\/6 /);
    expect(r.json).to.include.keys('checkpoint', 'epochs', 'train_accuracy', 'val_accuracy', 'test_accuracy', 'samples_per_s', 'backend');
    expect(r.json!.epochs).to.equal(6);
    expect(r.json!.val_accuracy as number).to.be.greaterThan(0.9);
    for (const f of ['model.json', 'weights.bin', 'recipe.yaml', 'preprocess.json', 'metrics.csv', 'ranges.json', 'summary.json', 'optimizer.json']) {
      expect(existsSync(join(out, f)), f).to.equal(true);
    }
    const ck = loadCheckpoint(out);
    expect(ck.preprocess.labels).to.deep.equal(['benign', 'malignant']);
    expect(Object.keys(ck.ranges!.activations)).to.deep.equal(['act1', 'act2']);
    const header = readFileSync(join(out, 'metrics.csv'), 'utf8').split('\n')[0];
    expect(header).to.equal('epoch,loss,accuracy,val_loss,val_accuracy,lr,samples_per_s,seconds');
  });

  it('eval reads it back: accuracy well above chance on the held-out split', () => {
    const r = hepoly(['eval', out, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.json).to.include({ split: 'validation', samples: 113 });
    expect(r.json!.accuracy as number).to.be.greaterThan(0.9);
    const trained = loadCheckpoint(out).metrics.at(-1)!;
    expect(r.json!.accuracy as number).to.be.closeTo(trained.val_accuracy, 1e-6);
  });

  it('summary shows layers, ranges and HE depth', () => {
    const r = hepoly(['summary', out]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/act1 \(activation quad\)/);
    expect(r.stdout).to.match(/Multiplicative depth under CKKS: 5 levels/);
    expect(r.stdout).to.match(/Total params: 1,560/);
  });

  it('same seed, same backend: same metrics', () => {
    const a = join(tmp.path, 'det-a');
    const b = join(tmp.path, 'det-b');
    for (const d of [a, b]) expect(hepoly(['train', 'recipes/quickstart.yaml', '--set', 'train.epochs=3', '--out', d]).code).to.equal(0);
    expect(metricsWithoutTiming(a)).to.deep.equal(metricsWithoutTiming(b));
    expect(readFileSync(join(a, 'weights.bin')).equals(readFileSync(join(b, 'weights.bin')))).to.equal(true);
  });

  it('--resume after a kill -9 continues from the last epoch and ends bit-identical to an uninterrupted run', () => {
    const full = join(tmp.path, 'full');
    const part = join(tmp.path, 'part');
    const args = ['train', 'recipes/quickstart.yaml', '--set', 'train.epochs=5'];
    expect(hepoly([...args, '--out', full]).code).to.equal(0);
    const killed = hepoly([...args, '--out', part], { env: { HEPOLY_TEST_KILL_AFTER_EPOCH: '2' } });
    expect(killed.code).to.not.equal(0);
    expect(loadCheckpoint(part).state).to.include({ epochs_done: 2, complete: false });
    const resumed = hepoly([...args, '--out', part, '--resume', '--json']);
    expect(resumed.code, resumed.stderr).to.equal(0);
    expect(resumed.stdout).to.contain('resuming after epoch 2');
    expect(resumed.stdout).to.not.match(/epoch 2\/5 /);
    const a = loadCheckpoint(full);
    const b = loadCheckpoint(part);
    expect(b.state).to.include({ epochs_done: 5, complete: true });
    expect(a.weights.size).to.equal(b.weights.size);
    // bit-exact: same seed, same backend, the optimizer state restored exactly (Adam's beta powers too)
    expect(readFileSync(join(part, 'weights.bin')).equals(readFileSync(join(full, 'weights.bin'))), 'weights.bin identical').to.equal(true);
    expect(readFileSync(join(part, 'optimizer.bin')).equals(readFileSync(join(full, 'optimizer.bin'))), 'optimizer.bin identical').to.equal(true);
    expect(metricsWithoutTiming(part)).to.deep.equal(metricsWithoutTiming(full));
  });

  it('--resume on a finished run says how to train further', () => {
    const r = hepoly(['train', 'recipes/quickstart.yaml', '--set', 'train.epochs=6', '--out', out, '--resume']);
    expect(r.code).to.not.equal(0);
    expect(r.stderr).to.contain('already finished 6 epochs');
    expect(r.stderr).to.contain('--set train.epochs=16');
  });

  it('leaves no temporary directories behind', () => {
    expect(readdirSync(tmp.path).filter((f) => /\.(tmp|prev)-/.test(f))).to.deep.equal([]);
  });
});
