import { expect } from 'chai';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { report } from '../../src/api/report.js';
import { PAYMENTS_FILES, runMakeData } from '../../src/cli/make-data.js';
import { HepolyError } from '../../src/util/errors.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * `hepoly report --out` and `hepoly make-data --out` claim their folder through the output guard
 * like train and export: a user's file or folder is refused before any work, and left as it was.
 * In-process (no CLI start); the claims come before the checkpoint is read.
 */
async function refusal(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
  } catch (e) {
    expect(e).to.be.instanceOf(HepolyError);
    return (e as Error).message;
  }
  return expect.fail('expected a refusal');
}

describe('report --out and make-data --out go through the output guard', function () {
  this.timeout(60000);
  const tmp = tempDir('hepoly-guard-');
  after(() => tmp.cleanup());
  const quiet = <T>(f: () => Promise<T>) => async () => {
    const log = console.log;
    console.log = () => {};
    try {
      return await f();
    } finally {
      console.log = log;
    }
  };

  function userFolder(name: string): string {
    const dir = join(tmp.path, name);
    mkdirSync(dir);
    writeFileSync(join(dir, 'notes.txt'), 'mine');
    return dir;
  }

  it('report: a folder of other files, a file and the current folder are refused, untouched', async () => {
    const dir = userFolder('report-user');
    expect(await refusal(() => report('no-such-checkpoint', { out: dir }))).to.match(/--out .*report-user: the folder exists and is not a hepoly report \(it holds notes\.txt\)/);
    expect(readdirSync(dir)).to.deep.equal(['notes.txt']);
    const file = join(tmp.path, 'report-file');
    writeFileSync(file, 'mine');
    expect(await refusal(() => report('no-such-checkpoint', { out: file }))).to.match(/--out .*report-file: is a file \(4 bytes\), not a hepoly report/);
    expect(readFileSync(file, 'utf8')).to.equal('mine');
    expect(await refusal(() => report('no-such-checkpoint', { out: '.' }))).to.match(/--out \.: is the current folder/);
  });

  it('make-data: writes a new folder, replaces its own earlier output, refuses a folder of other files', async () => {
    const out = join(tmp.path, 'payments');
    await quiet(() => runMakeData({ kind: 'payments', rows: 100, seed: 1, out }))();
    expect(readdirSync(out).sort(), 'the files makePayments writes').to.deep.equal(PAYMENTS_FILES);
    const first = readFileSync(join(out, 'transactions.csv'), 'utf8');
    await quiet(() => runMakeData({ kind: 'payments', rows: 150, seed: 1, out }))();
    expect(readFileSync(join(out, 'transactions.csv'), 'utf8').trim().split('\n')).to.have.length(151).and.not.deep.equal(first.trim().split('\n'));
    const dir = userFolder('payments-user');
    expect(await refusal(() => runMakeData({ kind: 'payments', rows: 100, seed: 1, out: dir }))).to.match(/--out .*payments-user: the folder exists and is not a hepoly payments data set/);
    expect(readdirSync(dir)).to.deep.equal(['notes.txt']);
  });
});
