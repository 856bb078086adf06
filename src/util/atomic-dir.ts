import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

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
  mkdirSync(dirname(dir), { recursive: true });
  recoverDir(dir, isComplete);
  const tmp = `${dir}.tmp-${process.pid}`;
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
  crashHook?.('written');
  const prev = `${dir}.prev-${process.pid}`;
  const hadOld = existsSync(dir);
  if (hadOld) renameSync(dir, prev);
  crashHook?.('moved-old');
  renameSync(tmp, dir);
  fsyncDir(dirname(dir));
  crashHook?.('moved-new');
  if (hadOld) rmSync(prev, { recursive: true, force: true });
}

/**
 * Brings `dir` back after an interrupted `writeDirAtomic`, and removes leftovers.
 * Returns true if `dir` exists afterwards.
 */
export function recoverDir(dir: string, isComplete: (d: string) => boolean): boolean {
  const parent = dirname(dir);
  const base = basename(dir);
  if (!existsSync(parent)) return false;
  const leftovers = readdirSync(parent)
    .filter((f) => f.startsWith(`${base}.tmp-`) || f.startsWith(`${base}.prev-`))
    .map((f) => join(parent, f));
  if (!existsSync(dir)) {
    // a complete tmp is newer than any prev: it was finished before the old one was moved away
    const candidates = [...leftovers.filter((f) => f.includes('.tmp-')), ...leftovers.filter((f) => f.includes('.prev-'))];
    const good = candidates.find((c) => isComplete(c));
    if (good) renameSync(good, dir);
  }
  for (const f of leftovers) if (existsSync(f)) rmSync(f, { recursive: true, force: true });
  return existsSync(dir);
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
