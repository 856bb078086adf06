#!/usr/bin/env node
// Runs the compiled CLI (npm install builds dist/ through the `prepare` script).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('error: hepoly is not built (dist/ is missing). Run `npm install` (or `npm run build`) in the hepoly folder\n');
  process.exit(1);
}
const { cli } = await import(entry.href);
cli();
