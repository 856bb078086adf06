import { expect } from 'chai';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';
import { BREAST_CANCER } from './fixtures.js';

/**
 * `hepoly export --data DIR`: export packs with a few held-out rows, so a checkpoint whose data
 * was moved away from where it was trained needs the folder its relative data paths are read
 * from, as eval and he-validate do (same flag, same semantics).
 */
describe('export --data (a moved data set)', function () {
  this.timeout(300000);
  const tmp = tempDir('hepoly-export-data-');
  after(() => tmp.cleanup());

  it('refuses naming the recipe field, the file and --data; with --data it writes both artifacts', () => {
    const run = join(tmp.path, 'run');
    mkdirSync(join(run, 'data'), { recursive: true });
    writeFileSync(join(run, 'data', 'bc.csv'), readFileSync(BREAST_CANCER));
    writeFileSync(join(run, 'r.yaml'), 'name: moved\ndata: {source: csv, path: data/bc.csv, label: diagnosis}\nmodel: {kind: mlp, hidden: [4], activation: {kind: quad}}\ntrain: {epochs: 1}\n');
    const trained = hepoly(['train', 'r.yaml', '--out', 'ck'], { cwd: run });
    expect(trained.code, trained.stderr).to.equal(0);
    mkdirSync(join(tmp.path, 'moved-data'));
    renameSync(join(run, 'data'), join(tmp.path, 'moved-data', 'data'));

    const lost = hepoly(['export', join(run, 'ck'), '--out', join(tmp.path, 'lost')], { cwd: tmp.path });
    expect(lost.code, lost.stdout + lost.stderr).to.equal(1);
    expect(lost.stderr).to.match(/ck\/recipe\.yaml: data\.path: data file "data\/bc\.csv" not found.*--data DIR/);
    expect(lost.stderr).to.not.match(/    at /);
    expect(existsSync(join(tmp.path, 'lost', 'server', 'manifest.json')), 'nothing exported').to.equal(false);

    const out = join(tmp.path, 'found');
    const found = hepoly(['export', join(run, 'ck'), '--data', join(tmp.path, 'moved-data'), '--out', out, '--json'], { cwd: tmp.path });
    expect(found.code, found.stderr).to.equal(0);
    const manifest = JSON.parse(readFileSync(join(out, 'server', 'manifest.json'), 'utf8')) as { digest: string };
    const client = JSON.parse(readFileSync(join(out, 'client', 'client.json'), 'utf8')) as { server_digest: string; preprocess: { labels: string[] } };
    expect(found.json!.digest).to.equal(manifest.digest);
    expect(client.server_digest).to.equal(manifest.digest);
    expect(client.preprocess.labels).to.have.length(2);
  });
});
