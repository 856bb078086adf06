import { allOps } from './registry.js';
import { PACKING_KINDS, type OpDef, type Support } from './types.js';
import type { LayerSpec } from '../models/graph.js';
import './index.js';

/**
 * The ops x packings table, generated from the registry: `hepoly ops` prints it and
 * scripts/gen-ops-table.ts writes it into docs/ops.md (a test checks the file is current).
 */

export interface OpsRow {
  op: string;
  example: string;
  family: string;
  lowering: string;
  levels: string;
  packings: Record<string, Support>;
  folds: string;
  pruning: string;
}

export function opsRows(): OpsRow[] {
  return allOps().flatMap((def) => def.examples.map(({ layer }) => row(def, layer)));
}

function row(def: OpDef, layer: LayerSpec): OpsRow {
  const poly = def.polynomial(layer);
  const cost = def.levelCost(layer, { node: layer.op, ranges: null });
  return {
    op: def.name,
    example: `${def.name} ${def.describe(layer)}`.trim(),
    family: `src/ops/${def.family}.ts`,
    lowering: poly !== true ? `none (${poly} is not a polynomial)` : 'program IR',
    levels: cost === null ? 'from ranges' : Number.isFinite(cost) ? String(cost) : '-',
    packings: Object.fromEntries(PACKING_KINDS.map((k) => [k, def.packings(layer)[k]])),
    folds: def.foldsInto ?? '',
    pruning: def.prunable.role === 'units' ? (def.prunable.refuse(layer) ? 'no' : 'units') : def.prunable.role,
  };
}

/** The table as markdown: a "no" names its reason by a numbered note under the table. */
export function opsMarkdown(): string {
  const notes: string[] = [];
  const mark = (v: Support) => {
    if (v === true) return 'yes';
    if (!notes.includes(v)) notes.push(v);
    return `no (${notes.indexOf(v) + 1})`;
  };
  const head = ['layer', 'file', 'HE lowering', 'levels', ...PACKING_KINDS, 'folds into', 'pruning'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of opsRows()) {
    const cells = [`\`${r.example}\``, r.family, r.lowering, r.levels, ...PACKING_KINDS.map((k) => mark(r.packings[k])), r.folds || '-', r.pruning];
    lines.push(`| ${cells.join(' | ')} |`);
  }
  lines.push('', ...notes.map((n, i) => `${i + 1}. ${n}`));
  return lines.join('\n');
}

export const OPS_DOC_HEADER = `# Ops

Generated from the op registry (\`src/ops/\`) by \`npx tsx scripts/gen-ops-table.ts\`; do not
edit by hand (\`test/ops/registry.test.ts\` fails when this file is out of date). \`hepoly ops\`
prints the same table. One row per example layer of each op. *levels*: CKKS levels the op
consumes, as the compiler spends them (\`from ranges\`: power-softmax's reciprocal is sized
from the recorded denominator range). *HE lowering*: \`program IR\` ops are compiled by
\`src/he/compile.ts\`; the packing columns say which packings run them (attention multiplies
arbitrary element pairs: batch packing runs it with a ciphertext per element, token packing
with a ciphertext per feature and rotated token blocks; image ops do not fold into token
blocks). How to add an op:
[adding-an-op.md](adding-an-op.md).

`;

export function opsDocument(): string {
  return `${OPS_DOC_HEADER}${opsMarkdown()}\n`;
}
