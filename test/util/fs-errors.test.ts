import { expect } from 'chai';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeDirAtomic } from '../../src/util/atomic-dir.js';
import { HepolyError } from '../../src/util/errors.js';
import { fsError } from '../../src/util/fs-errors.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * Failures root cannot provoke for real in CI (EACCES, ENOSPC, EROFS: root writes anywhere, and
 * mounting a full disk needs privileges): the mapping from Node's error to the user's line, and
 * a write that fails half-way, which must leave nothing behind.
 */
describe('file-system failures: one line naming the path and the fix, nothing half-written', () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());

  const errno = (code: string) => Object.assign(new Error(`${code}: raw`), { code });
  const cases: [string, RegExp][] = [
    ['ENOSPC', /the disk is full\. Free some space/],
    ['EACCES', /permission denied\. Choose a folder you can write to/],
    ['EROFS', /read-only/],
    ['ENAMETOOLONG', /path is too long/],
    ['EDQUOT', /quota/],
  ];
  for (const [code, message] of cases) {
    it(`${code} becomes a HepolyError naming the path`, () => {
      const e = fsError(errno(code), '/data/ck', 'write it');
      expect(e).to.be.instanceOf(HepolyError);
      expect((e as Error).message).to.match(/^\/data\/ck: cannot write it: /).and.match(message).and.contain(`(${code})`);
    });
  }

  it('an error that is not a file-system error passes through unchanged', () => {
    const e = new TypeError('bug');
    expect(fsError(e, '/x', 'write it')).to.equal(e);
  });

  it('a checkpoint write that fails half-way throws the user line and removes its temp folder', () => {
    const dir = join(tmp.path, 'half');
    // the second file cannot be created (its folder does not exist inside the temp folder)
    expect(() => writeDirAtomic(dir, [['a.bin', 'x'], ['missing/b.bin', 'y']], () => false)).to.throw(HepolyError, /half: cannot write it: a folder on the path does not exist/);
    expect(existsSync(dir)).to.equal(false);
    expect(readdirSync(tmp.path)).to.deep.equal([]);
  });
});
