import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Recipe } from '../../recipe/schema.js';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { resolveDataPath } from '../../data/index.js';
import { toCsv } from '../party-data.js';
import { JOINED_FILE, csvHeader } from './checkpoint-guard.js';
import { HepolyError } from '../../util/errors.js';
import { shortPath } from '../../util/paths.js';
import { type LocalColumns, standardize } from './common.js';
import { readColumns } from './party.js';

/**
 * `hepoly federate join RECIPE`: the joined table a vertical checkpoint's eval, he-validate and
 * export read (checkpoint-guard.ts), made from the parties' own files as the recipe names them.
 * Only for someone allowed to see every party's columns (docs/federated.md, threat model).
 * Rows are the label holder's, in its order (so the recipe's seeded split holds out the rows the
 * run held out); its features keep their names, a bank's are `<bank>.<column>` as the assembled
 * checkpoint names them. Where a bank lacks a row's ID it holds its column mean: the run feeds
 * zeros there after standardizing with the bank's own statistics, and the mean standardizes to 0.
 */
export interface JoinedTable {
  file: string;
  rows: number;
  columns: string[];
  /** per bank: label-holder rows whose ID it does not hold */
  unmatched: Record<string, number>;
}

export function writeJoinedTable(recipe: Recipe, recipeFile: string, out?: string): JoinedTable {
  const parties = recipe.federated!.parties.map((_, i) => readColumns(recipe, recipeFile, i));
  const holder = parties.find((p) => p.party.label)!;
  const banks = parties.filter((p) => p !== holder);
  const label = recipe.data.source === 'csv' ? recipe.data.label : '';
  const labelCol = holder.table.columns.indexOf(label);
  const header = [...holder.features, ...banks.flatMap((b) => b.features.map((f) => `${b.party.name}.${f}`)), label];
  const lookups = banks.map(bankLookup);
  const unmatched: Record<string, number> = Object.fromEntries(banks.map((b) => [b.party.name, 0]));
  const ownCols = holder.features.map((f) => holder.table.columns.indexOf(f));
  const rows = holder.table.rows.map((row) => {
    const id = row[holder.keyCol];
    const bankCells = lookups.flatMap((l, i) => {
      const cells = l.cells.get(id);
      if (!cells) unmatched[banks[i].party.name]++;
      return cells ?? l.mean;
    });
    return [...ownCols.map((c) => row[c]), ...bankCells, row[labelCol]];
  });
  // beside data.path where it was found: where the guard looks for it (checkpoint-guard.ts)
  const file = out ?? join(dirname(resolveDataPath((recipe.data as { path: string }).path, 'data.path', recipeFile).path), JOINED_FILE);
  refuseForeignFile(file, header, recipeFile);
  mkdirSync(dirname(file), { recursive: true });
  writeFileAtomic(file, toCsv([header, ...rows]));
  return { file, rows: rows.length, columns: header, unmatched };
}

/** Only a joined table of exactly these columns (an earlier join) is replaced; any other file stays as it is. */
function refuseForeignFile(file: string, header: string[], recipeFile: string): void {
  if (!existsSync(file)) return;
  const found = statSync(file).isFile() ? csvHeader(file) : null;
  if (found && found.length === header.length && found.every((c, i) => c === header[i])) return;
  const usable = found !== null && header.every((c) => found.includes(c));
  const what = found === null ? 'it is not a file' : usable ? 'it already holds every column a checkpoint of this recipe reads, so eval, he-validate and export can use it as it is' : `its columns are ${found.slice(0, 3).join(', ')}${found.length > 3 ? ', ...' : ''}`;
  throw new HepolyError(`${shortPath(file)} exists and is not a joined table this command wrote for ${recipeFile} (${what}); nothing was written. Pass --out with another file, or move that one away`);
}

/** A bank's feature cells by ID (the first row of an ID, as the run's alignment takes it) and its column means. */
function bankLookup(b: LocalColumns): { cells: Map<string, string[]>; mean: string[] } {
  const cols = b.features.map((f) => b.table.columns.indexOf(f));
  const cells = new Map<string, string[]>();
  for (const row of b.table.rows) if (!cells.has(row[b.keyCol])) cells.set(row[b.keyCol], cols.map((c) => row[c]));
  // the means the bank itself standardizes with in the run (common.ts); 9 digits: more than the float32 the readers parse
  const { mean } = standardize(b.x, null, b.features.length);
  return { cells, mean: mean.map((m) => String(+m.toPrecision(9))) };
}
