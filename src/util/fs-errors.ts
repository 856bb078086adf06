import { HepolyError } from './errors.js';

/** Why a file-system call failed, in words a user can act on, keyed by Node's error code. */
const ADVICE: Record<string, string> = {
  EACCES: 'permission denied. Choose a folder you can write to, or fix its permissions',
  EPERM: 'operation not permitted. Choose a folder you can write to, or fix its permissions',
  EROFS: 'the file system is read-only. Choose a folder on a writable disk',
  ENOSPC: 'the disk is full. Free some space or choose a folder on another disk',
  EDQUOT: 'the disk quota is exceeded. Free some space or choose a folder on another disk',
  ENAMETOOLONG: 'the path is too long (at most 255 bytes per name). Choose a shorter path',
  ENOTDIR: 'a part of the path is a file, not a folder. Choose another path',
  EISDIR: 'it is a folder, not a file. Give a file path',
  ENOENT: 'a folder on the path does not exist. Create it first or choose another path',
  EMFILE: 'too many open files. Close other programs or raise the limit (ulimit -n)',
};

/**
 * Turns a Node file-system error into one line naming the path, what went wrong and the fix;
 * anything that is not a file-system error is passed through unchanged.
 */
export function fsError(e: unknown, path: string, action: string): unknown {
  if (e instanceof HepolyError) return e;
  const code = (e as NodeJS.ErrnoException | null)?.code;
  if (!code || !ADVICE[code]) return e;
  return new HepolyError(`${path}: cannot ${action}: ${ADVICE[code]} (${code})`, { cause: e });
}

/** Runs `f`; a file-system error becomes the user-facing message of `fsError`. */
export function withFsErrors<T>(path: string, action: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw fsError(e, path, action);
  }
}
