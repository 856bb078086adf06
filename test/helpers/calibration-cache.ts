import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Mocha root hooks (loaded by .mocharc.json "require"): the whole run caches node-seal
 * calibrations in a fresh temporary file instead of the system temp folder, so no test reads a
 * calibration an earlier run (or another engineer) left behind, and none leaves one for the
 * next. Worker threads and the CLI child processes the tests spawn inherit the variable.
 */

let dir: string | null = null;
let previous: string | undefined;

export const mochaHooks = {
  beforeAll(): void {
    dir = mkdtempSync(join(tmpdir(), 'hepoly-calibration-'));
    previous = process.env.HEPOLY_CALIBRATION_CACHE;
    process.env.HEPOLY_CALIBRATION_CACHE = join(dir, 'calibration.json');
  },
  afterAll(): void {
    if (previous === undefined) delete process.env.HEPOLY_CALIBRATION_CACHE;
    else process.env.HEPOLY_CALIBRATION_CACHE = previous;
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = null;
  },
};
