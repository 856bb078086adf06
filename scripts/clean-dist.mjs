// Removes dist/ before a build: tsc never deletes the output of a moved or deleted source
// file, and the CLI tests run dist/, so a stale file could keep a test green (issue 16).
import { rmSync } from 'node:fs';

rmSync(new URL('../dist', import.meta.url), { recursive: true, force: true });
