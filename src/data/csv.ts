import { readFile } from 'node:fs/promises';
import { parse, type CsvError } from 'csv-parse/sync';
import { HepolyError, describeProblem } from '../util/errors.js';
import { didYouMean } from '../util/suggest.js';

/**
 * Where a data file came from, for error messages: the file as shown to the user, and the
 * recipe file and field that named it ("data.path in recipes/iris.yaml").
 */
export interface SourceRef {
  /** the data file, as it should appear in messages */
  file: string;
  /** the recipe field that named the file, e.g. `data.path` or `data.train.images` */
  field: string;
  recipeFile?: string;
}

/** `datasets/x.csv (data.path in recipes/r.yaml)` */
export function sourceLabel(ref: SourceRef): string {
  return `${ref.file} (${ref.field}${ref.recipeFile ? ` in ${ref.recipeFile}` : ''})`;
}

/** `data.label in recipes/r.yaml` or just `data.label`. */
export function recipeField(ref: SourceRef, field: string): string {
  return ref.recipeFile ? `${field} in ${ref.recipeFile}` : field;
}

export interface CsvOptions {
  /** name of the label column (`data.label`) */
  label: string;
  /** feature columns to use, in order (`data.features`); default: every column but the label */
  features?: string[];
}

export interface CsvTable {
  /** all header columns, in file order */
  columns: string[];
  /** the feature columns used, in order */
  features: string[];
  /** row-major numeric features, count * features.length */
  x: Float32Array;
  /** raw label cell of each row (trimmed) */
  labels: string[];
  count: number;
}

function fail(message: string, cause?: unknown): never {
  throw new HepolyError(message, cause === undefined ? {} : { cause });
}

const quote = (s: string) => JSON.stringify(s);

/** Parses CSV text with a header row into numeric features and raw label strings. */
export function parseCsvText(text: string | Buffer, opts: CsvOptions, ref: SourceRef): CsvTable {
  const src = sourceLabel(ref);
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, {
      bom: true,
      info: true,
      relax_column_count: true,
      skip_empty_lines: true,
      trim: true,
    }) as unknown as { record: string[]; info: { lines: number } }[];
  } catch (e) {
    const err = e as CsvError & { lines?: number };
    fail(
      describeProblem({
        file: src,
        field: err.lines ? `line ${err.lines}` : undefined,
        what: `not a valid CSV file (${err.message})`,
        fix: 'Check the quoting on that line: every opening double quote needs a closing one',
      }),
      e,
    );
  }
  if (records.length === 0) {
    fail(
      describeProblem({
        file: src,
        expected: 'a header line naming the columns, then one line per sample',
        found: 'an empty file',
        fix: `Point ${recipeField(ref, ref.field)} at the CSV file holding the data`,
      }),
    );
  }
  const header = records[0].record;
  const columns = header.map((c) => c.trim());
  const seen = new Map<string, number>();
  columns.forEach((c, i) => {
    if (c === '') {
      fail(
        describeProblem({
          file: src,
          field: `line ${records[0].info.lines}, column ${i + 1}`,
          expected: 'a column name in every header cell',
          found: 'an empty name',
          fix: 'Name that column in the header line (the first line of the file)',
        }),
      );
    }
    if (seen.has(c)) {
      fail(
        describeProblem({
          file: src,
          field: `line ${records[0].info.lines}`,
          expected: 'distinct column names in the header',
          found: `${quote(c)} twice (columns ${seen.get(c)! + 1} and ${i + 1})`,
          fix: 'Rename one of them in the header line',
        }),
      );
    }
    seen.set(c, i);
  });
  const columnList = columns.map(quote).join(', ');

  const labelIdx = seen.get(opts.label);
  if (labelIdx === undefined) {
    fail(
      describeProblem({
        file: src,
        field: 'data.label',
        expected: `a column named ${quote(opts.label)}`,
        found: `the columns ${columnList}${didYouMean(opts.label, columns)}`,
        fix: `Set ${recipeField(ref, 'data.label')} to the name of the column holding the class of each row`,
      }),
    );
  }

  let features: string[];
  if (opts.features) {
    features = opts.features;
    const used = new Set<string>();
    features.forEach((f, i) => {
      const field = `data.features[${i}]`;
      if (!seen.has(f)) {
        fail(
          describeProblem({
            file: src,
            field,
            expected: `a column named ${quote(f)}`,
            found: `the columns ${columnList}${didYouMean(f, columns)}`,
            fix: `Correct ${recipeField(ref, field)}, or remove data.features to use every column but the label`,
          }),
        );
      }
      if (f === opts.label) {
        fail(
          describeProblem({
            file: src,
            field,
            expected: 'feature columns other than the label column',
            found: `the label column ${quote(f)}`,
            fix: `Remove ${quote(f)} from ${recipeField(ref, 'data.features')}: a model must not see its own label`,
          }),
        );
      }
      if (used.has(f)) {
        fail(
          describeProblem({
            file: src,
            field,
            expected: 'each feature column once',
            found: `${quote(f)} listed twice`,
            fix: `Remove the duplicate from ${recipeField(ref, 'data.features')}`,
          }),
        );
      }
      used.add(f);
    });
  } else {
    features = columns.filter((_, i) => i !== labelIdx);
    if (features.length === 0) {
      fail(
        describeProblem({
          file: src,
          expected: 'at least one feature column besides the label column',
          found: `only the column ${quote(opts.label)}`,
          fix: 'Add feature columns to the file',
        }),
      );
    }
  }
  const featIdx = features.map((f) => seen.get(f)!);
  const F = features.length;

  const count = records.length - 1;
  if (count === 0) {
    fail(
      describeProblem({
        file: src,
        expected: 'one line per sample after the header line',
        found: 'only the header line',
        fix: `Point ${recipeField(ref, ref.field)} at a CSV file that holds data rows`,
      }),
    );
  }
  const x = new Float32Array(count * F);
  const labels = new Array<string>(count);
  for (let r = 0; r < count; r++) {
    const { record, info } = records[r + 1];
    // csv-parse reports the line a record ends on; a quoted cell may span lines.
    let newlines = 0;
    for (const cell of record) for (let k = 0; k < cell.length; k++) if (cell.charCodeAt(k) === 10) newlines++;
    const line = info.lines - newlines;
    if (record.length !== columns.length) {
      fail(
        describeProblem({
          file: src,
          field: `line ${line}`,
          expected: `${columns.length} cells, one per header column`,
          found: `${record.length} cell${record.length === 1 ? '' : 's'}`,
          fix: `Every row must have one value per column (${columnList}); look for a missing or extra comma on that line`,
        }),
      );
    }
    const lab = record[labelIdx];
    if (lab === '') {
      fail(
        describeProblem({
          file: src,
          field: `line ${line}, column ${quote(opts.label)}`,
          expected: 'a class label',
          found: 'an empty cell',
          fix: 'Fill in the label of that row or delete the row',
        }),
      );
    }
    labels[r] = lab;
    for (let j = 0; j < F; j++) {
      const cell = record[featIdx[j]];
      const v = cell === '' ? NaN : Number(cell);
      if (!Number.isFinite(v)) {
        fail(
          describeProblem({
            file: src,
            field: `line ${line}, column ${quote(features[j])}`,
            expected: 'a number',
            found: cell === '' ? 'an empty cell' : quote(cell),
            fix:
              `Fix or fill in that cell (or delete the row), or leave the column out of ` +
              `${recipeField(ref, 'data.features')}`,
          }),
        );
      }
      x[r * F + j] = v;
    }
  }
  return { columns, features, x, labels, count };
}

/** Reads and parses a CSV file; `path` is the resolved path to read. */
export async function readCsv(path: string, opts: CsvOptions, ref: SourceRef): Promise<CsvTable> {
  let text: Buffer;
  try {
    text = await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    fail(
      describeProblem({
        file: sourceLabel(ref),
        what: code === 'ENOENT' ? 'data file not found' : `cannot read the data file (${code ?? String(e)})`,
        fix: `Check ${recipeField(ref, ref.field)}`,
      }),
      e,
    );
  }
  return parseCsvText(text, opts, ref);
}
