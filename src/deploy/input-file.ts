import { existsSync, readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { parse as parseCsv } from 'csv-parse/sync';
import { decompressIdx, parseIdxImages } from '../data/idx.js';
import { HepolyError } from '../util/errors.js';
import type { ClientArtifact } from './artifact-format.js';

/**
 * `hepoly predict --input FILE`: raw samples (as the training data had them, before
 * normalization) from CSV (a header row; the artifact's feature columns are picked by name,
 * others such as the label are ignored), IDX images (gzip or raw) or JSON (an array of
 * number arrays, or of objects keyed by feature name).
 */
export function readInputFile(file: string, artifact: ClientArtifact): Float64Array[] {
  if (!existsSync(file)) throw new HepolyError(`--input ${file}: file not found`);
  const per = artifact.preprocess.input_shape.reduce((a, b) => a * b, 1);
  const ext = extname(file.replace(/\.gz$/, '')).toLowerCase();
  let samples: Float64Array[];
  if (ext === '.csv') samples = fromCsv(file, artifact, per);
  else if (ext === '.json') samples = fromJson(file, artifact, per);
  else if (ext === '.idx' || ext === '.idx3-ubyte' || /-idx3-ubyte$/.test(file.replace(/\.gz$/, ''))) samples = fromIdx(file, per);
  else throw new HepolyError(`--input ${file}: unknown format ${JSON.stringify(ext)}. Use a .csv, .json or .idx (idx3-ubyte, optionally .gz) file`);
  if (!samples.length) throw new HepolyError(`--input ${file}: no samples`);
  return samples;
}

function fromCsv(file: string, artifact: ClientArtifact, per: number): Float64Array[] {
  let rows: Record<string, string>[];
  try {
    rows = parseCsv(readFileSync(file, 'utf8'), { columns: true, skip_empty_lines: true, trim: true }) as Record<string, string>[];
  } catch (e) {
    throw new HepolyError(`--input ${file}: not valid CSV (${(e as Error).message}). Expected a header row, then one sample per row`);
  }
  if (!rows.length) return [];
  const columns = artifact.preprocess.features ?? Object.keys(rows[0]).slice(0, per);
  const missing = columns.filter((c) => !(c in rows[0]));
  if (missing.length) throw new HepolyError(`--input ${file}: column ${missing.slice(0, 5).join(', ')} missing: the model reads the columns ${columns.slice(0, 8).join(', ')}${columns.length > 8 ? ', ...' : ''}`);
  if (columns.length !== per) throw new HepolyError(`--input ${file}: ${columns.length} columns, the model takes ${per} values per sample`);
  return rows.map((r, i) =>
    Float64Array.from(columns, (c) => {
      const v = Number(r[c]);
      if (r[c] === '' || !Number.isFinite(v)) throw new HepolyError(`--input ${file}: row ${i + 2}, column ${c}: expected a number, found ${JSON.stringify(r[c])}`);
      return v;
    }),
  );
}

function fromJson(file: string, artifact: ClientArtifact, per: number): Float64Array[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new HepolyError(`--input ${file}: not valid JSON (${(e as Error).message})`);
  }
  const list = Array.isArray(raw) ? raw : (raw as { inputs?: unknown })?.inputs;
  if (!Array.isArray(list)) throw new HepolyError(`--input ${file}: expected an array of samples (or {"inputs": [...]})`);
  const features = artifact.preprocess.features;
  return list.map((s, i) => {
    const values = Array.isArray(s) ? s.flat(4) : features && s && typeof s === 'object' ? features.map((f) => (s as Record<string, unknown>)[f]) : null;
    if (!values) throw new HepolyError(`--input ${file}: sample ${i}: expected an array of numbers${features ? ' or an object keyed by feature name' : ''}`);
    if (values.length !== per) throw new HepolyError(`--input ${file}: sample ${i}: ${values.length} values, the model takes ${per}`);
    return Float64Array.from(values, (v, j) => {
      if (typeof v !== 'number' || !Number.isFinite(v)) throw new HepolyError(`--input ${file}: sample ${i}, value ${features?.[j] ?? j}: expected a number, found ${JSON.stringify(v)}`);
      return v;
    });
  });
}

function fromIdx(file: string, per: number): Float64Array[] {
  const ref = { file, field: '--input' };
  const img = parseIdxImages(decompressIdx(new Uint8Array(readFileSync(file)), ref), ref);
  if (img.rows * img.cols !== per) throw new HepolyError(`--input ${file}: ${img.rows}x${img.cols} images, the model takes ${per} values per sample`);
  return Array.from({ length: img.count }, (_, i) => Float64Array.from(img.data.subarray(i * per, (i + 1) * per)));
}
