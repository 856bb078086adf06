import { closeSync, existsSync, lstatSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, type Stats } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { HepolyError } from './errors.js';
import { withFsErrors } from './fs-errors.js';
import { acquireLock, type Lock } from './lock.js';
import { recoverDir } from './atomic-dir.js';

/**
 * Every command that writes a folder or a file of the user's goes through here first, before
 * any work starts: a user's files are never replaced, only hepoly's own outputs, and only
 * when the user said so. A folder output is also locked against a second writer.
 */
export interface OutputDirPolicy {
  /** the command-line flag or recipe key that named the path, e.g. `--out` */
  flag: string;
  /** what hepoly writes there, e.g. `checkpoint` */
  kind: string;
  /** a description of `dir` when it holds a complete output of this kind, else null */
  describeOurs: (dir: string) => string | null;
  /** the user allowed replacing (or continuing) one of ours */
  replace: boolean;
  /** how the user allows it, e.g. `pass --overwrite to replace it or --resume to continue it` */
  replaceHint: string;
}

export interface OutputClaim {
  dir: string;
  /** true when `dir` holds one of ours that will be replaced or continued */
  existing: boolean;
  release(): void;
}

export function claimOutputDir(arg: string, p: OutputDirPolicy): OutputClaim {
  const dir = checkedPath(arg, p.flag);
  const stat = statOrNull(dir, p.flag);
  if (stat?.isSymbolicLink()) {
    throw new HepolyError(`${p.flag} ${arg}: is a symbolic link; hepoly writes a ${p.kind} only into a real folder it made. Give another path`);
  }
  if (stat && !stat.isDirectory()) {
    throw new HepolyError(`${p.flag} ${arg}: is a file (${stat.size} bytes), not a hepoly ${p.kind}; hepoly never replaces it. Give another path`);
  }
  withFsErrors(dirname(dir), 'create the folder', () => mkdirSync(dirname(dir), { recursive: true }));
  const lock = acquireLock(dir, `${p.flag} ${arg}`);
  try {
    const existing = existingOutput(dir, arg, p);
    probeWritable(dirname(dir));
    return { dir, existing, release: () => lock.release() };
  } catch (e) {
    lock.release();
    throw e;
  }
}

/**
 * Checks a single output file (a report) before the work that produces it: its folder must be
 * writable, and an existing file is replaced only if `isOurs` recognises it.
 */
export function checkOutputFile(arg: string, flag: string, isOurs: (text: string) => boolean): string {
  const path = checkedPath(arg, flag);
  const stat = statOrNull(path, flag);
  if (stat?.isDirectory()) throw new HepolyError(`${flag} ${arg}: is a folder; give a file path, e.g. ${join(arg, 'report.md')}`);
  if (stat?.isSymbolicLink()) throw new HepolyError(`${flag} ${arg}: is a symbolic link; give the path of a new file`);
  if (stat && !isOurs(readFileSync(path, 'utf8').slice(0, 4096))) {
    throw new HepolyError(`${flag} ${arg}: exists and was not written by hepoly; hepoly never replaces it. Give another path or remove the file`);
  }
  if (!existsSync(dirname(path))) {
    throw new HepolyError(`${flag} ${arg}: the folder ${dirname(arg) || '.'} does not exist. Create it first (mkdir -p ${dirname(arg)}) or give another path`);
  }
  probeWritable(dirname(path));
  return path;
}

function checkedPath(arg: string, flag: string): string {
  if (arg.trim() === '') throw new HepolyError(`${flag} is empty. Give a path, e.g. ${flag} checkpoints/my-run`);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(arg)) throw new HepolyError(`${flag} ${arg}: hepoly writes local paths only, not URLs. Give a folder path`);
  const path = resolve(arg);
  const cwd = process.cwd();
  const rel = relative(path, cwd);
  if (rel === '' || (!rel.startsWith('..') && !isAbsolute(rel)) || path === homedir() || path === dirname(path)) {
    throw new HepolyError(`${flag} ${arg}: is the current folder, a folder above it, the home folder or the root; hepoly would replace it. Give a new folder, e.g. ${flag} checkpoints/my-run`);
  }
  return path;
}

function statOrNull(path: string, flag: string): Stats | null {
  return withFsErrors(`${flag} ${path}`, 'look at it', () => {
    try {
      return lstatSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  });
}

/** Whether `dir` holds one of ours to replace; refuses a folder of anything else. */
function existingOutput(dir: string, arg: string, p: OutputDirPolicy): boolean {
  const isOurs = (d: string) => p.describeOurs(d) !== null;
  if (!recoverDir(dir, isOurs)) return false; // nothing there (leftovers of a killed run removed)
  const entries = readdirSync(dir);
  if (entries.length === 0) return false;
  const ours = p.describeOurs(dir);
  if (ours === null) {
    const shown = entries.slice(0, 3).join(', ') + (entries.length > 3 ? `, ... (${entries.length} entries)` : '');
    throw new HepolyError(`${p.flag} ${arg}: the folder exists and is not a hepoly ${p.kind} (it holds ${shown}); hepoly never replaces it. Give a new folder`);
  }
  if (!p.replace) throw new HepolyError(`${p.flag} ${arg}: already holds ${ours}. To replace it ${p.replaceHint}, or give another folder`);
  return true;
}

function probeWritable(folder: string): void {
  const probe = join(folder, `.hepoly-write-test-${process.pid}`);
  withFsErrors(folder, 'write into it', () => {
    closeSync(openSync(probe, 'wx'));
    rmSync(probe, { force: true });
  });
}

export type { Lock };
