import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Mocha global fixtures (loaded by .mocharc.json "require"): the whole run caches node-seal
 * calibrations in a fresh temporary file instead of the system temp folder, so no test reads a
 * calibration an earlier run (or another engineer) left behind, and none leaves one for the
 * next. Global fixtures run once in mocha's own process before it forks the parallel workers,
 * so every test file, worker thread and CLI child process inherits the same variable and the
 * run calibrates once, not once per file.
 */

let dir: string | null = null;
let previous: string | undefined;

export function mochaGlobalSetup(): void {
  dir = mkdtempSync(join(tmpdir(), 'hepoly-calibration-'));
  previous = process.env.HEPOLY_CALIBRATION_CACHE;
  process.env.HEPOLY_CALIBRATION_CACHE = join(dir, 'calibration.json');
}

export function mochaGlobalTeardown(): void {
  if (previous === undefined) delete process.env.HEPOLY_CALIBRATION_CACHE;
  else process.env.HEPOLY_CALIBRATION_CACHE = previous;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = null;
}
