/**
 * Writes docs/ops.md from the op registry: npx tsx scripts/gen-ops-table.ts
 * (test/ops/registry.test.ts checks the committed file equals what this writes).
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { opsDocument } from '../src/ops/table.js';
import { writeFileAtomic } from '../src/util/atomic-file.js';

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..');
writeFileAtomic(join(root, 'docs', 'ops.md'), opsDocument());
console.log('wrote docs/ops.md');
