import { existsSync } from 'node:fs';
import { join, normalize, resolve, sep } from 'node:path';
import { packageRoot, shortPath } from '../util/paths.js';

/**
 * Where a pretrained model named by a recipe (`distill.teacher`, `init_from`) is read from.
 *
 * Recipes name the teachers shipped in `teachers/` so that they train on a fresh clone. A model
 * the user trained under `checkpoints/` with the same name takes precedence (it is theirs, and
 * likely trained longer than the small shipped one); `checkpoints/NAME` in a recipe falls back
 * to the shipped `teachers/NAME` the same way. Any other path is read as given.
 */
export interface PretrainedPath {
  /** absolute path to read */
  path: string;
  /** 'own': the user's checkpoints/NAME; 'shipped': teachers/NAME of this folder or the package */
  source: 'own' | 'shipped' | 'as-given';
  /** one line for the first lines of `hepoly train`'s output */
  note: string;
}

/** The folders shipped teachers are looked up in: `teachers/` of the current folder, then the package's. */
export function shippedTeacherDirs(root = process.cwd()): string[] {
  const dirs = [join(root, 'teachers'), join(packageRoot(), 'teachers')];
  return [...new Set(dirs.map((d) => resolve(d)))];
}

/** NAME when `ref` is `teachers/NAME` or `checkpoints/NAME` (relative), else null. */
function pretrainedName(ref: string): string | null {
  const parts = normalize(ref).split(sep).filter((p) => p && p !== '.');
  if (parts.length !== 2 || (parts[0] !== 'teachers' && parts[0] !== 'checkpoints')) return null;
  return parts[1];
}

/** Resolves `ref` (as a recipe's `field` gives it, relative to `root`) by the precedence above. */
export function resolvePretrained(ref: string, field: string, root = process.cwd()): PretrainedPath {
  const name = pretrainedName(ref);
  if (!name) return { path: resolve(root, ref), source: 'as-given', note: `${field}: ${ref}` };
  const own = resolve(root, 'checkpoints', name);
  if (existsSync(own)) {
    const over = normalize(ref).startsWith('teachers') ? ` (your own; it takes precedence over the shipped teachers/${name})` : '';
    return { path: own, source: 'own', note: `${field}: ${shortPath(own)}${over}` };
  }
  for (const dir of shippedTeacherDirs(root)) {
    const shipped = join(dir, name);
    if (existsSync(shipped)) {
      return {
        path: shipped,
        source: 'shipped',
        note: `${field}: the shipped teacher ${shortPath(shipped)} (a checkpoints/${name} of your own would take precedence)`,
      };
    }
  }
  return { path: resolve(root, ref), source: 'as-given', note: `${field}: ${ref}` };
}
