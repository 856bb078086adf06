import Table from 'cli-table3';
import type { ShippedTeacher } from '../api/teachers.js';
import { shortPath } from '../util/paths.js';
import { defineCommand } from './command.js';

export interface TeachersArgs {
  json?: boolean;
}

/** `hepoly teachers`: the pretrained teachers shipped in teachers/, which the distilling recipes use. */
export async function runTeachers(a: TeachersArgs): Promise<void> {
  const { listTeachers } = await import('../api/teachers.js');
  printTeachers(listTeachers(), a);
}

/** The list as a table, or as one JSON array with --json. */
export function printTeachers(rows: ShippedTeacher[], a: TeachersArgs): void {
  if (a.json) {
    console.log(JSON.stringify(rows));
    return;
  }
  if (!rows.length) {
    console.log('no shipped teachers found (teachers/teachers.json in this folder or the hepoly package)');
    return;
  }
  const table = new Table({ head: ['teacher', 'architecture', 'params', 'test accuracy', 'size', 'trained', 'used by'], style: { head: [], border: [], compact: true } });
  for (const t of rows) {
    table.push([shortPath(t.path), t.architecture, t.params?.toLocaleString('en-US') ?? '-', `${t.test_accuracy.toFixed(4)} (${t.test_samples})`, `${(t.bytes / 1024).toFixed(0)} KiB`, t.trained, t.used_by.join(', ')]);
  }
  console.log(table.toString());
  console.log('A checkpoints/NAME you train yourself takes precedence over teachers/NAME. Reproduce one: hepoly teachers --json (command)');
}

export const teachersCommand = defineCommand(
  'teachers',
  'the pretrained teachers shipped in teachers/: architecture, test accuracy, size (distilling recipes use them)',
  (y) => y.option('json', { type: 'boolean', default: false, describe: 'print the list as one JSON array' }),
  (a) => runTeachers({ json: a.json }),
);
