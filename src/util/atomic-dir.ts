import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { HepolyError } from './errors.js';
import { withFsErrors } from './fs-errors.js';
import { lockedByOther } from './lock.js';

/**
 * Replacing a whole directory so that a crash (kill -9) at any instant leaves either the old
 * complete directory or the new complete one. POSIX has no atomic directory swap, so:
 *   1. write everything into `<dir>.tmp-<pid>` and fsync it;
 *   2. rename `<dir>` -> `<dir>.prev-<pid>`;  3. rename the tmp dir -> `<dir>`;  4. delete prev.
 * A crash between 2 and 3 leaves no `<dir>` but a complete tmp (newest) and a complete prev:
 * `recoverDir` puts the newest complete one back. Completeness is judged by `isComplete`,
 * which callers implement by checking the file they write last.
 */

export type FileContents = string | Uint8Array;

/** Test hook: called with the step name before each step; throwing simulates a crash. */
export let crashHook: ((step: 'written' | 'moved-old' | 'moved-new') => void) | null = null;
export function setCrashHook(h: typeof crashHook): void {
  crashHook = h;
}

export function writeDirAtomic(dir: string, files: [string, FileContents][], isComplete: (d: string) => boolean): void {
  withFsErrors(dirname(dir), 'create the folder', () => mkdirSync(dirname(dir), { recursive: true }));
  recoverDir(dir, isComplete);
  refuseForeign(dir, isComplete);
  const tmp = `${dir}.tmp-${process.pid}`;
  try {
    withFsErrors(dir, 'write it', () => writeTmp(tmp, files));
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true }); // ENOSPC, EACCES, ...: leave nothing behind
    throw e;
  }
  step('written');
  const prev = `${dir}.prev-${process.pid}`;
  const hadOld = existsSync(dir);
  if (hadOld) renameSync(dir, prev);
  step('moved-old');
  renameSync(tmp, dir);
  fsyncDir(dirname(dir));
  step('moved-new');
  if (hadOld) rmSync(prev, { recursive: true, force: true });
}

/** The last line of defence: a folder that is not ours (and not empty) is never moved away. */
function refuseForeign(dir: string, isComplete: (d: string) => boolean): void {
  if (!existsSync(dir) || isComplete(dir)) return;
  if (statSync(dir).isDirectory() && readdirSync(dir).length === 0) return;
  throw new HepolyError(`${dir}: exists and is not a complete hepoly output; hepoly never replaces it. Move it away or write elsewhere`);
}

function writeTmp(tmp: string, files: [string, FileContents][]): void {
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  for (const [name, contents] of files) {
    const fd = openSync(join(tmp, name), 'w');
    try {
      const buf = typeof contents === 'string' ? Buffer.from(contents) : contents;
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
  fsyncDir(tmp);
}

/**
 * Crash points for tests: the hook (which may throw) and, with HEPOLY_TEST_KILL_AT_WRITE set to
 * a step name, a real SIGKILL at that instant, so recovery is tested against a real kill.
 */
function step(name: 'written' | 'moved-old' | 'moved-new'): void {
  crashHook?.(name);
  if (process.env.HEPOLY_TEST_KILL_AT_WRITE === name) process.kill(process.pid, 'SIGKILL');
}

/**
 * Brings `dir` back after an interrupted `writeDirAtomic`, and removes leftovers; while another
 * live process holds the folder's lock (it is writing), nothing is moved or removed.
 * Returns true if `dir` exists afterwards.
 */
export function recoverDir(dir: string, isComplete: (d: string) => boolean): boolean {
  if (lockedByOther(dir)) return existsSync(dir);
  const leftovers = leftoversOf(dir);
  if (!existsSync(dir)) {
    const good = newestComplete(leftovers, isComplete);
    if (good) renameSync(good, dir);
  }
  for (const f of leftovers) if (existsSync(f)) rmSync(f, { recursive: true, force: true });
  return existsSync(dir);
}

/**
 * The folder a reader should read: `dir`, or, while a writer is between its two renames or was
 * killed there, the newest complete copy beside it. Null when there is none.
 */
export function readableDir(dir: string, isComplete: (d: string) => boolean): string | null {
  for (let wait = 0; wait < 20 && !existsSync(dir) && lockedByOther(dir); wait++) sleepMs(50);
  if (existsSync(dir) || recoverDir(dir, isComplete)) return dir;
  return newestComplete(leftoversOf(dir), isComplete);
}

function leftoversOf(dir: string): string[] {
  const parent = dirname(dir);
  const base = basename(dir);
  if (!existsSync(parent)) return [];
  return readdirSync(parent)
    .filter((f) => f.startsWith(`${base}.tmp-`) || f.startsWith(`${base}.prev-`))
    .map((f) => join(parent, f));
}

/** A complete tmp is newer than any prev: it was finished before the old one was moved away. */
function newestComplete(leftovers: string[], isComplete: (d: string) => boolean): string | null {
  const candidates = [...leftovers.filter((f) => f.includes('.tmp-')), ...leftovers.filter((f) => f.includes('.prev-'))];
  return candidates.find((c) => isComplete(c)) ?? null;
}

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
