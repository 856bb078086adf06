import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fsError } from './fs-errors.js';

/**
 * Writes a file so that readers see either the old contents or the whole new ones: a crash
 * or a full disk mid-write leaves only a temporary file, which is removed when the write fails.
 */
export function writeFileAtomic(path: string, contents: string | Uint8Array): void {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
  try {
    writeFileSync(tmp, contents);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw fsError(e, path, 'write it');
  }
}
