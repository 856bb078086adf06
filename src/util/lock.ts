import { closeSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { HepolyError } from './errors.js';
import { withFsErrors } from './fs-errors.js';

/**
 * An exclusive lock on a path, held by this process: the file `<path>.lock` holds our PID.
 * A lock whose PID no longer runs is stale (its owner was killed) and is taken over.
 * Released on `release()` and, as a last resort, when the process exits.
 */
export interface Lock {
  readonly file: string;
  release(): void;
}

/** lock file -> how many claims of this process hold it (a run may claim its own output twice) */
const held = new Map<string, number>();
let exitHookInstalled = false;

export function acquireLock(path: string, what: string): Lock {
  const file = `${path}.lock`;
  if (!held.has(file)) takeLock(file, what);
  held.set(file, (held.get(file) ?? 0) + 1);
  installExitHook();
  let released = false;
  return {
    file,
    release: () => {
      if (released) return;
      released = true;
      const n = (held.get(file) ?? 1) - 1;
      if (n > 0) return void held.set(file, n);
      held.delete(file);
      if (lockOwner(file) === process.pid) rmSync(file, { force: true });
    },
  };
}

function takeLock(file: string, what: string): void {
  withFsErrors(file, 'create the lock file', () => {
    for (let attempt = 0; attempt < 3; attempt++) {
      if (tryCreate(file)) return;
      const owner = lockOwner(file);
      if (owner !== null && owner !== process.pid && isRunning(owner)) {
        throw new HepolyError(`${what} is in use by PID ${owner} (lock file ${file}). Wait for that run to finish, stop it, or choose another path`);
      }
      rmSync(file, { force: true }); // stale: its owner is gone
    }
    throw new HepolyError(`${file}: could not take the lock (another process keeps recreating it). Choose another path`);
  });
}

/** True when a live process other than this one holds the lock of `path`. */
export function lockedByOther(path: string): boolean {
  const owner = lockOwner(`${path}.lock`);
  return owner !== null && owner !== process.pid && isRunning(owner);
}

function tryCreate(file: string): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'wx', 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    writeSync(fd, `${process.pid}\n`);
  } finally {
    closeSync(fd);
  }
  return true;
}

function lockOwner(file: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8'), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // alive, owned by another user
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const file of held.keys()) if (lockOwner(file) === process.pid) rmSync(file, { force: true });
  });
}
