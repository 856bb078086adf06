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

type CsvRecord = { record: string[]; info: { lines: number } };

/** What every check needs to name the file and the recipe field in its message. */
interface CsvContext {
  src: string;
  ref: SourceRef;
  opts: CsvOptions;
}

/** The columns of the header line and where each name is (distinct, non-empty). */
interface CsvHeader {
  columns: string[];
  index: Map<string, number>;
  /** the columns quoted for messages: `"a", "b"` */
  list: string;
}

/** Parses CSV text with a header row into numeric features and raw label strings. */
export function parseCsvText(text: string | Buffer, opts: CsvOptions, ref: SourceRef): CsvTable {
  const ctx: CsvContext = { src: sourceLabel(ref), ref, opts };
  const records = parseRecords(text, ctx);
  const header = readHeader(records[0], ctx);
  const labelIdx = labelColumn(header, ctx);
  const features = opts.features ? checkedFeatures(opts.features, header, ctx) : defaultFeatures(header, labelIdx, ctx);
  const rows = records.slice(1);
  if (rows.length === 0) {
    fail(
      describeProblem({
        file: ctx.src,
        expected: 'one line per sample after the header line',
        found: 'only the header line',
        fix: `Point ${recipeField(ref, ref.field)} at a CSV file that holds data rows`,
      }),
    );
  }
  const featIdx = features.map((f) => header.index.get(f)!);
  const F = features.length;
  const x = new Float32Array(rows.length * F);
  const labels = rows.map((row, r) => {
    const line = recordLine(row);
    checkCellCount(row.record, line, header, ctx);
    const label = labelCell(row.record[labelIdx], line, ctx);
    readFeatureCells(row.record, line, featIdx, features, ctx, x.subarray(r * F, (r + 1) * F));
    return label;
  });
  return { columns: header.columns, features, x, labels, count: rows.length };
}

/** The records of the file, at least one (the header); bad quoting and empty files are refused. */
function parseRecords(text: string | Buffer, ctx: CsvContext): CsvRecord[] {
  let records: CsvRecord[];
  try {
    records = parse(text, {
      bom: true,
      info: true,
      relax_column_count: true,
      skip_empty_lines: true,
      trim: true,
    }) as unknown as CsvRecord[];
  } catch (e) {
    const err = e as CsvError & { lines?: number };
    fail(
      describeProblem({
        file: ctx.src,
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
        file: ctx.src,
        expected: 'a header line naming the columns, then one line per sample',
        found: 'an empty file',
        fix: `Point ${recipeField(ctx.ref, ctx.ref.field)} at the CSV file holding the data`,
      }),
    );
  }
  return records;
}

/** The header line: every cell a name, no name twice. */
function readHeader(first: CsvRecord, ctx: CsvContext): CsvHeader {
  const columns = first.record.map((c) => c.trim());
  const index = new Map<string, number>();
  columns.forEach((c, i) => {
    if (c === '') {
      fail(
        describeProblem({
          file: ctx.src,
          field: `line ${first.info.lines}, column ${i + 1}`,
          expected: 'a column name in every header cell',
          found: 'an empty name',
          fix: 'Name that column in the header line (the first line of the file)',
        }),
      );
    }
    if (index.has(c)) {
      fail(
        describeProblem({
          file: ctx.src,
          field: `line ${first.info.lines}`,
          expected: 'distinct column names in the header',
          found: `${quote(c)} twice (columns ${index.get(c)! + 1} and ${i + 1})`,
          fix: 'Rename one of them in the header line',
        }),
      );
    }
    index.set(c, i);
  });
  return { columns, index, list: columns.map(quote).join(', ') };
}

/** The index of `data.label`'s column, with a did-you-mean when it is missing. */
function labelColumn(header: CsvHeader, ctx: CsvContext): number {
  const { label } = ctx.opts;
  const idx = header.index.get(label);
  if (idx === undefined) {
    fail(
      describeProblem({
        file: ctx.src,
        field: 'data.label',
        expected: `a column named ${quote(label)}`,
        found: `the columns ${header.list}${didYouMean(label, header.columns)}`,
        fix: `Set ${recipeField(ctx.ref, 'data.label')} to the name of the column holding the class of each row`,
      }),
    );
  }
  return idx;
}

/** `data.features` as given: each an existing column, not the label, listed once. */
function checkedFeatures(features: string[], header: CsvHeader, ctx: CsvContext): string[] {
  const used = new Set<string>();
  features.forEach((f, i) => {
    const field = `data.features[${i}]`;
    if (!header.index.has(f)) {
      fail(
        describeProblem({
          file: ctx.src,
          field,
          expected: `a column named ${quote(f)}`,
          found: `the columns ${header.list}${didYouMean(f, header.columns)}`,
          fix: `Correct ${recipeField(ctx.ref, field)}, or remove data.features to use every column but the label`,
        }),
      );
    }
    if (f === ctx.opts.label) {
      fail(
        describeProblem({
          file: ctx.src,
          field,
          expected: 'feature columns other than the label column',
          found: `the label column ${quote(f)}`,
          fix: `Remove ${quote(f)} from ${recipeField(ctx.ref, 'data.features')}: a model must not see its own label`,
        }),
      );
    }
    if (used.has(f)) {
      fail(
        describeProblem({
          file: ctx.src,
          field,
          expected: 'each feature column once',
          found: `${quote(f)} listed twice`,
          fix: `Remove the duplicate from ${recipeField(ctx.ref, 'data.features')}`,
        }),
      );
    }
    used.add(f);
  });
  return features;
}

/** Without `data.features`: every column but the label, at least one. */
function defaultFeatures(header: CsvHeader, labelIdx: number, ctx: CsvContext): string[] {
  const features = header.columns.filter((_, i) => i !== labelIdx);
  if (features.length === 0) {
    fail(
      describeProblem({
        file: ctx.src,
        expected: 'at least one feature column besides the label column',
        found: `only the column ${quote(ctx.opts.label)}`,
        fix: 'Add feature columns to the file',
      }),
    );
  }
  return features;
}

/** The line a record starts on: csv-parse reports the line it ends on, and a quoted cell may span lines. */
function recordLine({ record, info }: CsvRecord): number {
  let newlines = 0;
  for (const cell of record) for (let k = 0; k < cell.length; k++) if (cell.charCodeAt(k) === 10) newlines++;
  return info.lines - newlines;
}

function checkCellCount(record: string[], line: number, header: CsvHeader, ctx: CsvContext): void {
  if (record.length === header.columns.length) return;
  fail(
    describeProblem({
      file: ctx.src,
      field: `line ${line}`,
      expected: `${header.columns.length} cells, one per header column`,
      found: `${record.length} cell${record.length === 1 ? '' : 's'}`,
      fix: `Every row must have one value per column (${header.list}); look for a missing or extra comma on that line`,
    }),
  );
}

function labelCell(cell: string, line: number, ctx: CsvContext): string {
  if (cell !== '') return cell;
  fail(
    describeProblem({
      file: ctx.src,
      field: `line ${line}, column ${quote(ctx.opts.label)}`,
      expected: 'a class label',
      found: 'an empty cell',
      fix: 'Fill in the label of that row or delete the row',
    }),
  );
}

/** Writes the row's feature cells into `out`; an empty or non-numeric cell is refused by line and column. */
function readFeatureCells(record: string[], line: number, featIdx: number[], features: string[], ctx: CsvContext, out: Float32Array): void {
  for (let j = 0; j < featIdx.length; j++) {
    const cell = record[featIdx[j]];
    const v = cell === '' ? NaN : Number(cell);
    if (!Number.isFinite(v)) {
      fail(
        describeProblem({
          file: ctx.src,
          field: `line ${line}, column ${quote(features[j])}`,
          expected: 'a number',
          found: cell === '' ? 'an empty cell' : quote(cell),
          fix: `Fix or fill in that cell (or delete the row), or leave the column out of ${recipeField(ctx.ref, 'data.features')}`,
        }),
      );
    }
    out[j] = v;
  }
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
