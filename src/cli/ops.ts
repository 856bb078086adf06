import { defineCommand } from './command.js';

export interface OpsArgs {
  json?: boolean;
}

/** `hepoly ops`: every registered op, its HE lowering and level cost, and which packings run it. */
export async function runOps(a: OpsArgs): Promise<void> {
  const [{ default: Table }, { PACKING_KINDS }, { opsRows }] = await Promise.all([import('cli-table3'), import('../ops/types.js'), import('../ops/table.js')]);
  const rows = opsRows();
  if (a.json) {
    console.log(JSON.stringify(rows));
    return;
  }
  const table = new Table({ head: ['Layer', 'HE lowering', 'Levels', ...PACKING_KINDS, 'Pruning'], style: { head: [], border: [], compact: true } });
  for (const r of rows) table.push([r.example, r.lowering, r.levels, ...PACKING_KINDS.map((k) => (r.packings[k] === true ? 'yes' : 'no')), r.pruning]);
  console.log(table.toString());
  console.log('Why a packing says no, and how each op folds: docs/ops.md (or hepoly ops --json)');
}

export const opsCommand = defineCommand(
  'ops', 'every layer op, its HE lowering and level cost, and which packings run it (docs/ops.md)', (y) => y.option('json', { type: 'boolean', default: false }), (a) => runOps({ json: a.json }),
);
