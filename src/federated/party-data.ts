import { readFileSync } from 'node:fs';
import { parse } from 'csv-parse/sync';
import { resolveDataPath } from '../data/index.js';
import { HepolyError, describeProblem } from '../util/errors.js';

/**
 * A party's CSV as raw cells: its header and rows of strings. Horizontal parties check their
 * header against the columns the recipe expects; vertical parties pick their key and feature
 * columns. Values are parsed to numbers by the caller, which knows which columns are features.
 */
export interface PartyTable {
  file: string;
  columns: string[];
  rows: string[][];
}

export function readPartyTable(path: string, field: string, recipeFile: string): PartyTable {
  const { path: resolved, ref } = resolveDataPath(path, field, recipeFile);
  let records: string[][];
  try {
    records = parse(readFileSync(resolved), { bom: true, skip_empty_lines: true, trim: true }) as string[][];
  } catch (e) {
    throw new HepolyError(`${ref.file} (${field} in ${recipeFile}): not a valid CSV file (${(e as Error).message}). Fix the file`, { cause: e });
  }
  if (records.length < 2) throw new HepolyError(`${ref.file} (${field} in ${recipeFile}): expected a header line and at least one row. Point ${field} at the party's CSV`);
  return { file: ref.file, columns: records[0], rows: records.slice(1) };
}

/** Refuses a party whose columns are not exactly the ones the recipe expects (order aside). */
export function checkColumns(t: PartyTable, expected: string[], field: string, recipeFile: string, expectedFrom: string): void {
  const missing = expected.filter((c) => !t.columns.includes(c));
  const extra = t.columns.filter((c) => !expected.includes(c));
  if (!missing.length && !extra.length) return;
  throw new HepolyError(
    describeProblem({
      file: `${t.file} (${field} in ${recipeFile})`,
      what: 'its columns differ from the recipe\'s',
      expected: `the ${expected.length} columns of ${expectedFrom}`,
      found: [missing.length ? `missing ${missing.map((c) => JSON.stringify(c)).join(', ')}` : '', extra.length ? `unexpected ${extra.map((c) => JSON.stringify(c)).join(', ')}` : ''].filter(Boolean).join('; '),
      fix: 'Every horizontal party must hold the same columns: rename or drop columns in this file, or set data.features to the shared feature columns',
    }),
  );
}

/** Numeric matrix of the named columns, row-major; a cell that is not a number is an error. */
export function numericColumns(t: PartyTable, names: string[], field: string, recipeFile: string): Float32Array {
  const idx = names.map((n) => t.columns.indexOf(n));
  const x = new Float32Array(t.rows.length * names.length);
  t.rows.forEach((row, r) => {
    idx.forEach((c, j) => {
      const v = Number(row[c]);
      if (row[c] === '' || row[c] === undefined || !Number.isFinite(v)) {
        throw new HepolyError(`${t.file} (${field} in ${recipeFile}): line ${r + 2}, column ${JSON.stringify(names[j])}: expected a number, found ${JSON.stringify(row[c] ?? '')}. Fix that cell or leave the column out of the features`);
      }
      x[r * names.length + j] = v;
    });
  });
  return x;
}

/** RFC 4180 CSV text: cells holding a comma, quote or line break are quoted. */
export function toCsv(rows: (string | number)[][]): string {
  const cell = (v: string | number) => {
    const s = String(v);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return rows.map((r) => r.map(cell).join(',')).join('\n') + '\n';
}
