import { expect } from 'chai';
import { copyFileSync, existsSync, readFileSync, readdirSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hepoly, type CliResult } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * Every way a user can get it wrong ends in one clear message (file, field, fix), a non-zero
 * exit code and nothing half-written on disk.
 */
describe('bad input (end to end)', function () {
  this.timeout(300000);
  const tmp = tempDir();
  after(() => tmp.cleanup());
  const recipe = (name: string, text: string) => {
    const p = join(tmp.path, name);
    writeFileSync(p, text);
    return p;
  };
  const qs = (extra = '') =>
    `name: bad\ndata: {source: csv, path: datasets/breast-cancer-wisconsin.csv, label: diagnosis}\nmodel: {kind: mlp, hidden: [8]}\ntrain: {epochs: 2}\n${extra}`;

  function expectCleanFailure(r: CliResult, out: string, ...patterns: RegExp[]) {
    expect(r.code, r.stdout + r.stderr).to.not.equal(0);
    const err = r.stderr.trim();
    expect(err.split('\n')[0]).to.match(/^error: /);
    expect(err).to.not.match(/internal error|    at /);
    for (const p of patterns) expect(err).to.match(p);
    expect(existsSync(out), `${out} must not be created`).to.equal(false);
    expect(readdirSync(tmp.path).filter((f) => /\.(tmp|prev)-/.test(f))).to.deep.equal([]);
  }

  it('unknown recipe key: file, line, key and did-you-mean', () => {
    const out = join(tmp.path, 'o1');
    const p = recipe('unknown.yaml', qs('trian: {batch: 4}\n'));
    expectCleanFailure(hepoly(['train', p, '--out', out]), out, /unknown\.yaml:5: trian: unknown key "trian" \(did you mean "train"\?\)/);
  });

  it('NaN loss: exit code 3, the recipe file, what to change, no checkpoint', () => {
    const out = join(tmp.path, 'o-nan');
    const r = hepoly(['train', 'recipes/quickstart.yaml', '--set', 'train.optimizer.lr=100000', '--set', 'train.clip=null', '--out', out]);
    expect(r.code, r.stderr).to.equal(3);
    expectCleanFailure(r, out, /quickstart\.yaml: training diverged: the loss became (NaN|infinite|exploding)/, /train\.optimizer\.lr/, /train\.clip/);
  });

  it('init_from pointing at a missing checkpoint names the recipe key and what to train', () => {
    const out = join(tmp.path, 'o-init');
    const p = recipe('initfrom.yaml', qs('init_from: checkpoints/no-such-run\n'));
    expectCleanFailure(hepoly(['train', p, '--out', out]), out, /initfrom\.yaml: init_from: checkpoints\/no-such-run not found/, /hepoly train/);
  });

  it('wrong type', () => {
    const out = join(tmp.path, 'o2');
    const p = recipe('wrongtype.yaml', qs().replace('epochs: 2', 'epochs: two'));
    expectCleanFailure(hepoly(['train', p, '--out', out]), out, /wrongtype\.yaml:4: train\.epochs: expected number, found "two"/);
  });

  it('missing data file', () => {
    const out = join(tmp.path, 'o3');
    const p = recipe('nofile.yaml', qs().replace('breast-cancer-wisconsin.csv', 'breast-cancer.csv'));
    expectCleanFailure(hepoly(['train', p, '--out', out]), out, /data\.path/, /breast-cancer\.csv/, /not found/);
  });

  it('label column absent', () => {
    const out = join(tmp.path, 'o4');
    expectCleanFailure(
      hepoly(['train', 'recipes/quickstart.yaml', '--set', 'data.label=diagnosys', '--out', out]),
      out,
      /data\.label/,
      /did you mean "diagnosis"/,
    );
  });

  it('non-numeric feature cell: row and column named', () => {
    const out = join(tmp.path, 'o5');
    const csv = readFileSync('datasets/breast-cancer-wisconsin.csv', 'utf8').split('\n');
    const cells = csv[3].split(',');
    cells[2] = 'n/a';
    csv[3] = cells.join(',');
    writeFileSync(join(tmp.path, 'cells.csv'), csv.join('\n'));
    const p = recipe('cells.yaml', qs().replace('datasets/breast-cancer-wisconsin.csv', join(tmp.path, 'cells.csv')));
    expectCleanFailure(hepoly(['train', p, '--out', out]), out, /line 4/, /column "mean_perimeter"/, /"n\/a"/);
  });

  it('CNN on CSV features without an image shape', () => {
    const out = join(tmp.path, 'o6');
    const p = recipe('cnn.yaml', qs().replace('model: {kind: mlp, hidden: [8]}', 'model: {kind: cnn, layers: [{type: conv, filters: 4}, {type: dense}]}'));
    expectCleanFailure(hepoly(['train', p, '--out', out]), out, /a cnn needs image inputs/, /data\.shape/);
  });

  it('CNN on CSV features of the wrong shape', () => {
    const out = join(tmp.path, 'o7');
    const p = recipe(
      'cnnshape.yaml',
      qs()
        .replace('label: diagnosis}', 'label: diagnosis, shape: [5, 5, 1]}')
        .replace('model: {kind: mlp, hidden: [8]}', 'model: {kind: cnn, layers: [{type: conv, filters: 4}, {type: dense}]}'),
    );
    expectCleanFailure(hepoly(['train', p, '--out', out]), out, /data\.shape/, /30/);
  });

  it('NaN / exploding loss stops at once and keeps the last good checkpoint', () => {
    const out = join(tmp.path, 'nan');
    expect(hepoly(['train', 'recipes/quickstart.yaml', '--set', 'train.epochs=2', '--out', out]).code).to.equal(0);
    const before = readFileSync(join(out, 'weights.bin'));
    const r = hepoly(['train', 'recipes/quickstart.yaml', '--set', 'train.optimizer.lr=10000', '--set', 'train.clip=null', '--out', out, '--overwrite']);
    expect(r.code).to.equal(3);
    expect(r.stderr).to.match(/loss became (NaN|infinite|exploding).* at epoch 1, batch \d+/);
    expect(r.stderr).to.match(/lower train\.optimizer\.lr/);
    expect(readFileSync(join(out, 'weights.bin')).equals(before)).to.equal(true);
    expect(hepoly(['eval', out]).code).to.equal(0);
  });

  it('corrupt and truncated checkpoints are refused by eval and summary', () => {
    const good = join(tmp.path, 'nan');
    const bad = join(tmp.path, 'truncated');
    expect(hepoly(['train', 'recipes/quickstart.yaml', '--set', 'train.epochs=1', '--out', bad]).code).to.equal(0);
    truncateSync(join(bad, 'weights.bin'), 100);
    for (const cmd of ['eval', 'summary']) {
      const r = hepoly([cmd, bad]);
      expect(r.code).to.not.equal(0);
      expect(r.stderr).to.match(/weights\.bin has 100 bytes.*truncated/);
      expect(r.stderr).to.match(/hepoly train/);
    }
    copyFileSync(join(good, 'model.json'), join(bad, 'model.json'));
    writeFileSync(join(bad, 'model.json'), readFileSync(join(bad, 'model.json'), 'utf8').slice(0, 200));
    const r = hepoly(['eval', bad]);
    expect(r.code).to.not.equal(0);
    expect(r.stderr).to.match(/model\.json is not valid JSON/);
  });

  it('an unknown command or option is a usage error', () => {
    const r = hepoly(['trian', 'recipes/quickstart.yaml']);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/Did you mean train/);
  });
});
