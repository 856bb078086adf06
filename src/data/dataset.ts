import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CsvDataConfig, DataConfig, IdxDataConfig, NormalizeConfig } from '../recipe/schema.js';
import { HepolyError, describeProblem } from '../util/errors.js';
import { makeRng, permutation } from '../util/rng.js';
import { closest } from '../util/suggest.js';
import { readCsv, recipeField, sourceLabel, type SourceRef } from './csv.js';
import { readIdxPair, type IdxImages, type IdxLabels } from './idx.js';

/** One split of the data: `x` row-major, `count * prod(inputShape)` values; `y` class ids. */
export interface Split {
  x: Float32Array;
  y: Int32Array;
  count: number;
}

/**
 * How inputs are normalized, `x' = f(x)`. Stored in checkpoints so evaluation applies exactly
 * the training-time transform.
 * - `standard`: `(x - mean[j]) / std[j]` per input element j (CSV features);
 * - `minmax`: `(x - min[j]) / (max[j] - min[j])` per input element (range 0 counts as 1);
 * - `affine`: `x * scale + shift` for every element (images; IDX `standard`/`minmax` become a
 *   scalar affine computed over all pixels of the train split).
 */
export type NormalizeStats =
  | { kind: 'standard'; mean: number[]; std: number[] }
  | { kind: 'minmax'; min: number[]; max: number[] }
  | { kind: 'affine'; scale: number; shift: number }
  | { kind: 'none' };

export interface Preprocess {
  /** class names, sorted (numeric labels numerically, others lexicographically); class id = index */
  labels: string[];
  /** per-sample shape, NHWC without batch: `[F]` (or `data.shape`) for CSV, `[28, 28, 1]` for IDX images */
  inputShape: number[];
  /** CSV: the feature columns used, in order */
  features?: string[];
  normalize: NormalizeStats;
}

export interface LoadedData {
  train: Split;
  validation: Split;
  /** IDX with a `test` pair only; CSV has no separate test split */
  test: Split | null;
  preprocess: Preprocess;
  /** resolved paths of the files read */
  sources: string[];
}

export interface LoadOptions {
  /** recipe seed; the split uses `makeRng(seed, 'split')` */
  seed: number;
  /** the recipe file, for error messages */
  recipeFile?: string;
  /** reuse a saved preprocess (label mapping, normalization stats) instead of computing one */
  preprocess?: Preprocess;
  /** more folders a relative data path is read from, after the current one (a checkpoint's training folder, --data) */
  dataRoots?: string[];
}

function fail(message: string, cause?: unknown): never {
  throw new HepolyError(message, cause === undefined ? {} : { cause });
}

const quote = (s: string) => JSON.stringify(s);
const prod = (a: number[]) => a.reduce((p, v) => p * v, 1);

// ---------------------------------------------------------------------------------------------
// Paths

let cachedRoot: string | null | undefined;

/** The hepoly package folder: the nearest folder holding package.json above this module. */
export function packageRoot(): string | null {
  if (cachedRoot !== undefined) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  cachedRoot = null;
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) {
      cachedRoot = dir;
      break;
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return cachedRoot;
}

const DEBIAN_FASHION_MNIST = '/usr/share/datasets/fashion-mnist';
const FASHION_MNIST_FILE = /^(train|t10k)-(images-idx3|labels-idx1)-ubyte(\.gz)?$/;

/** The places a recipe path is looked up, in order. */
export function dataPathCandidates(p: string, roots: string[] = []): string[] {
  const out: string[] = [resolve(p)];
  if (!isAbsolute(p)) {
    for (const r of roots) out.push(resolve(r, p));
    const root = packageRoot();
    if (root) out.push(resolve(root, p));
  }
  const base = basename(p);
  if (FASHION_MNIST_FILE.test(base)) {
    const bare = base.replace(/\.gz$/, '');
    for (const b of [base, base === bare ? `${bare}.gz` : bare]) out.push(join(DEBIAN_FASHION_MNIST, b));
  }
  return [...new Set(out)];
}

function isFolder(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** Shows a resolved path relative to the current directory when it lies below it. */
function displayPath(p: string): string {
  const rel = relative(process.cwd(), p);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : p;
}

/**
 * Resolves a data file named by a recipe field: relative to the current directory, then to the
 * hepoly package folder (so shipped recipes work from anywhere), then, for Fashion-MNIST file
 * names, Debian's /usr/share/datasets/fashion-mnist. Throws a HepolyError listing the places tried.
 */
export function resolveDataPath(p: string, field: string, recipeFile?: string, roots: string[] = []): { path: string; ref: SourceRef } {
  const tried = dataPathCandidates(p, roots);
  for (const c of tried) {
    if (isFile(c)) return { path: c, ref: { file: displayPath(c), field, recipeFile } };
  }
  const folder = tried.find(isFolder);
  if (folder) {
    const files = readdirSync(folder).filter((f) => !f.startsWith('.')).slice(0, 4);
    fail(describeProblem({ file: recipeFile, field, what: `${quote(p)} is a folder, not a data file`, fix: `Name a file in it${files.length ? `, e.g. ${quote(join(p, files[0]))} (it holds ${files.join(', ')})` : ''}` }));
  }
  let hint = '';
  for (const c of tried) {
    const dir = dirname(c);
    try {
      const near = closest(basename(c), readdirSync(dir));
      if (near) {
        hint = ` (did you mean ${quote(join(dirname(p), near))}?)`;
        break;
      }
    } catch {
      // folder missing: nothing to suggest
    }
  }
  const root = packageRoot();
  fail(
    describeProblem({
      file: recipeFile,
      field,
      what: `data file ${quote(p)} not found (looked at ${tried.join(', ')})${hint}`,
      fix: isAbsolute(p)
        ? `Correct ${field}`
        : `Correct ${field}: a relative path is read from the current directory (${process.cwd()})` +
          (roots.length ? `, then from ${roots.join(', ')}` : '') +
          (root && root !== process.cwd() ? `, then from the hepoly package folder (${root})` : '') +
          (recipeFile?.endsWith('recipe.yaml') ? `; for a checkpoint, --data DIR names the folder its data paths are relative to` : ''),
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Labels

/** Sorts class names: numerically when every name is a number, else lexicographically. */
export function sortLabels(names: Iterable<string>): string[] {
  const list = [...new Set(names)];
  const numeric = list.every((s) => s.trim() !== '' && Number.isFinite(Number(s)));
  if (numeric) return list.sort((a, b) => Number(a) - Number(b) || (a < b ? -1 : a > b ? 1 : 0));
  return list.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function unknownLabel(label: string, known: string[], where: string): never {
  fail(
    describeProblem({
      file: where,
      what: `class ${quote(label)} is not one of the classes the checkpoint was trained on`,
      expected: `one of ${known.map(quote).join(', ')}`,
      found: quote(label),
      fix: 'Evaluate on data with the same classes as the training data, or retrain on this data',
    }),
  );
}

// ---------------------------------------------------------------------------------------------
// Split

/**
 * Seeded stratified split. Per class (in class-id order) the samples are shuffled and
 * `round(fraction * n)` of them go to validation, but never the last one: a class with a
 * single sample stays in train. Each side is then ordered so that every prefix is close to
 * stratified (so `limit` keeps the class balance). Deterministic in (y, fraction, seed).
 */
/** The seeded split; a single class is refused here (nothing to classify), split sizes by `checkSplitSizes`. */
function checkedSplit(y: Int32Array, labels: string[], fraction: number, seed: number, source: string): { train: Int32Array; validation: Int32Array } {
  if (labels.length < 2) {
    throw new HepolyError(`${source}: only one class (${quote(labels[0] ?? '')}) in the data; a classifier needs at least two. Check data.label, or the file`);
  }
  return stratifiedSplit(y, labels.length, fraction, seed);
}

/**
 * Training refuses a split it cannot learn or measure on: no validation sample (eval would
 * report NaN on nothing) or fewer training samples than a few per class. Library callers of
 * `loadData` may still ask for any split.
 */
export function checkSplitSizes(data: { train: { count: number }; validation: { count: number } }, classes: number, fraction: number, recipeFile?: string): void {
  const total = data.train.count + data.validation.count;
  if (data.validation.count === 0) {
    throw new HepolyError(`${where(recipeFile, 'data.split.validation')}: ${fraction} leaves no validation sample of ${total}. Use a fraction between 0 and 1 that keeps some, e.g. 0.2`);
  }
  const minTrain = Math.max(10, 2 * classes);
  if (data.train.count < minTrain) {
    throw new HepolyError(`${where(recipeFile, 'data.split.validation')}: ${fraction} leaves ${data.train.count} training samples of ${total} (at least ${minTrain} are needed). Use a smaller fraction, e.g. 0.2`);
  }
}

export function stratifiedSplit(
  y: Int32Array,
  numClasses: number,
  fraction: number,
  seed: number,
): { train: Int32Array; validation: Int32Array } {
  const rng = makeRng(seed, 'split');
  const byClass: number[][] = Array.from({ length: numClasses }, () => []);
  for (let i = 0; i < y.length; i++) byClass[y[i]].push(i);
  const trainParts: number[][] = [];
  const valParts: number[][] = [];
  for (const members of byClass) {
    const n = members.length;
    const perm = permutation(n, rng);
    const nVal = n <= 1 ? 0 : Math.min(n - 1, Math.round(fraction * n));
    const shuffled = Array.from(perm, (k) => members[k]);
    valParts.push(shuffled.slice(0, nVal));
    trainParts.push(shuffled.slice(nVal));
  }
  const interleave = (parts: number[][]): Int32Array => {
    // key = (rank + u) / n_c: sorting by key merges the classes evenly
    const keyed: { i: number; key: number }[] = [];
    for (const part of parts) {
      const n = part.length;
      for (let r = 0; r < n; r++) keyed.push({ i: part[r], key: (r + rng.next()) / n });
    }
    keyed.sort((a, b) => a.key - b.key || a.i - b.i);
    return Int32Array.from(keyed, (k) => k.i);
  };
  const train = interleave(trainParts);
  const validation = interleave(valParts);
  return { train, validation };
}

function gather(src: Float32Array | Uint8Array, F: number, y: Int32Array, idx: ArrayLike<number>): Split {
  const count = idx.length;
  const x = new Float32Array(count * F);
  const yy = new Int32Array(count);
  for (let r = 0; r < count; r++) {
    const i = idx[r];
    const off = i * F;
    for (let j = 0; j < F; j++) x[r * F + j] = src[off + j];
    yy[r] = y[i];
  }
  return { x, y: yy, count };
}

// ---------------------------------------------------------------------------------------------
// Normalization

/** Computes normalization stats from the train split's inputs. */
export function computeNormalize(
  cfg: NormalizeConfig,
  x: Float32Array,
  featuresPerSample: number,
  scope: 'per-feature' | 'scalar',
): NormalizeStats {
  if (cfg === 'none') return { kind: 'none' };
  if (typeof cfg === 'object') return { kind: 'affine', scale: cfg.scale, shift: cfg.shift ?? 0 };
  const F = featuresPerSample;
  const n = F > 0 ? x.length / F : 0;
  if (scope === 'scalar') {
    const N = x.length;
    if (cfg === 'standard') {
      let s = 0;
      for (let k = 0; k < N; k++) s += x[k];
      const mean = N ? s / N : 0;
      let v = 0;
      for (let k = 0; k < N; k++) v += (x[k] - mean) ** 2;
      let std = N ? Math.sqrt(v / N) : 1;
      if (!(std > 0)) std = 1;
      return { kind: 'affine', scale: 1 / std, shift: -mean / std };
    }
    let lo = Infinity;
    let hi = -Infinity;
    for (let k = 0; k < N; k++) {
      if (x[k] < lo) lo = x[k];
      if (x[k] > hi) hi = x[k];
    }
    if (!Number.isFinite(lo)) (lo = 0), (hi = 1);
    const range = hi > lo ? hi - lo : 1;
    return { kind: 'affine', scale: 1 / range, shift: -lo / range };
  }
  if (cfg === 'standard') {
    const mean = new Float64Array(F);
    const sq = new Float64Array(F);
    for (let r = 0; r < n; r++) for (let j = 0; j < F; j++) mean[j] += x[r * F + j];
    for (let j = 0; j < F; j++) mean[j] = n ? mean[j] / n : 0;
    for (let r = 0; r < n; r++) for (let j = 0; j < F; j++) sq[j] += (x[r * F + j] - mean[j]) ** 2;
    const std = Array.from(sq, (s) => {
      const d = n ? Math.sqrt(s / n) : 0;
      return d > 0 ? d : 1;
    });
    return { kind: 'standard', mean: Array.from(mean), std };
  }
  const min = new Array<number>(F).fill(Infinity);
  const max = new Array<number>(F).fill(-Infinity);
  for (let r = 0; r < n; r++) {
    for (let j = 0; j < F; j++) {
      const v = x[r * F + j];
      if (v < min[j]) min[j] = v;
      if (v > max[j]) max[j] = v;
    }
  }
  for (let j = 0; j < F; j++) if (!Number.isFinite(min[j])) (min[j] = 0), (max[j] = 1);
  return { kind: 'minmax', min, max };
}

/** Applies normalization stats to row-major samples of `featuresPerSample` values, in place. */
export function applyNormalize(x: Float32Array, featuresPerSample: number, stats: NormalizeStats): void {
  const F = featuresPerSample;
  switch (stats.kind) {
    case 'none':
      return;
    case 'affine': {
      const { scale, shift } = stats;
      for (let k = 0; k < x.length; k++) x[k] = x[k] * scale + shift;
      return;
    }
    case 'standard':
    case 'minmax': {
      const a = stats.kind === 'standard' ? stats.mean : stats.min;
      const b = stats.kind === 'standard' ? stats.std : stats.max;
      if (a.length !== F || b.length !== F || x.length % F !== 0) {
        fail(
          `normalization stats (${stats.kind}) hold ${a.length} values but the data has ${F} input values per sample: ` +
            'the saved preprocessing does not belong to this data. Use the recipe the checkpoint was trained with',
        );
      }
      const shift = new Float64Array(F);
      const inv = new Float64Array(F);
      for (let j = 0; j < F; j++) {
        shift[j] = a[j];
        const d = stats.kind === 'standard' ? b[j] : b[j] - a[j];
        inv[j] = d > 0 ? 1 / d : 1;
      }
      const n = x.length / F;
      for (let r = 0; r < n; r++) {
        const off = r * F;
        for (let j = 0; j < F; j++) x[off + j] = (x[off + j] - shift[j]) * inv[j];
      }
      return;
    }
  }
}

function statsSize(stats: NormalizeStats): number | null {
  if (stats.kind === 'standard') return stats.mean.length;
  if (stats.kind === 'minmax') return stats.min.length;
  return null;
}

function checkSavedShape(saved: Preprocess, inputShape: number[], where: string): void {
  const same = saved.inputShape.length === inputShape.length && saved.inputShape.every((v, i) => v === inputShape[i]);
  if (!same) {
    fail(
      describeProblem({
        file: where,
        what: 'the data does not match the checkpoint',
        expected: `samples of shape [${saved.inputShape.join(', ')}] (as in training)`,
        found: `[${inputShape.join(', ')}]`,
        fix: 'Evaluate with the recipe (data section) the checkpoint was trained with',
      }),
    );
  }
  const s = statsSize(saved.normalize);
  if (s !== null && s !== prod(inputShape)) {
    fail(
      describeProblem({
        file: where,
        what: 'the saved normalization does not match the data',
        expected: `${prod(inputShape)} values per sample`,
        found: `stats for ${s}`,
        fix: 'The checkpoint is inconsistent: retrain it',
      }),
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Loading

/**
 * Loads the data a recipe's `data` section describes: reads the files, maps labels to class
 * ids, splits train/validation (seeded, stratified), applies `limit`/`test_limit` and
 * normalizes with stats from the train split (or with `opts.preprocess` when given).
 */
export async function loadData(cfg: DataConfig, opts: LoadOptions): Promise<LoadedData> {
  return cfg.source === 'csv' ? loadCsvData(cfg, opts) : loadIdxData(cfg, opts);
}

function where(recipeFile: string | undefined, field: string): string {
  return recipeFile ? `${recipeFile}: ${field}` : field;
}

async function loadCsvData(cfg: CsvDataConfig, opts: LoadOptions): Promise<LoadedData> {
  const { path, ref } = resolveDataPath(cfg.path, 'data.path', opts.recipeFile, opts.dataRoots);
  const table = await readCsv(path, { label: cfg.label, features: cfg.features }, ref);
  const F = table.features.length;
  const saved = opts.preprocess;

  let inputShape = [F];
  if (cfg.shape) {
    const shape = cfg.shape.length === 2 ? [...cfg.shape, 1] : [...cfg.shape];
    if (prod(shape) !== F) {
      fail(
        describeProblem({
          file: opts.recipeFile,
          field: 'data.shape',
          expected: `a shape holding the ${F} feature values of ${ref.file} (product ${F})`,
          found: `[${cfg.shape.join(', ')}] (product ${prod(cfg.shape)})`,
          fix: `Set data.shape so that H x W x C = ${F}, or select ${prod(cfg.shape)} columns with data.features`,
        }),
      );
    }
    inputShape = shape;
  }

  // labels
  let labels: string[];
  if (saved) {
    if (saved.features) {
      const same = saved.features.length === F && saved.features.every((f, i) => f === table.features[i]);
      if (!same) {
        fail(
          describeProblem({
            file: sourceLabel(ref),
            what: 'the feature columns differ from the ones the checkpoint was trained on',
            expected: saved.features.map(quote).join(', '),
            found: table.features.map(quote).join(', '),
            fix: `Set ${recipeField(ref, 'data.features')} to the training columns`,
          }),
        );
      }
    }
    checkSavedShape(saved, inputShape, sourceLabel(ref));
    labels = saved.labels;
  } else {
    labels = sortLabels(table.labels);
  }
  const ids = new Map(labels.map((l, i) => [l, i]));
  const y = new Int32Array(table.count);
  for (let r = 0; r < table.count; r++) {
    const id = ids.get(table.labels[r]);
    if (id === undefined) unknownLabel(table.labels[r], labels, `${sourceLabel(ref)}: column ${quote(cfg.label)}`);
    y[r] = id;
  }

  const split = checkedSplit(y, labels, cfg.split.validation, opts.seed, `${sourceLabel(ref)}: column ${quote(cfg.label)}`);
  const trainIdx = cfg.limit !== undefined ? split.train.subarray(0, cfg.limit) : split.train;
  const train = gather(table.x, F, y, trainIdx);
  const validation = gather(table.x, F, y, split.validation);
  const normalize = saved ? saved.normalize : computeNormalize(cfg.normalize, train.x, F, 'per-feature');
  applyNormalize(train.x, F, normalize);
  applyNormalize(validation.x, F, normalize);
  return {
    train,
    validation,
    test: null,
    preprocess: { labels, inputShape, features: table.features, normalize },
    sources: [path],
  };
}

async function loadIdxData(cfg: IdxDataConfig, opts: LoadOptions): Promise<LoadedData> {
  const rf = opts.recipeFile;
  const trImg = resolveDataPath(cfg.train.images, 'data.train.images', rf, opts.dataRoots);
  const trLab = resolveDataPath(cfg.train.labels, 'data.train.labels', rf, opts.dataRoots);
  const teImg = cfg.test ? resolveDataPath(cfg.test.images, 'data.test.images', rf, opts.dataRoots) : null;
  const teLab = cfg.test ? resolveDataPath(cfg.test.labels, 'data.test.labels', rf, opts.dataRoots) : null;

  const trainPair = await readIdxPair({ images: trImg.path, labels: trLab.path }, { images: trImg.ref, labels: trLab.ref });
  let testPair: { images: IdxImages; labels: IdxLabels } | null = null;
  if (teImg && teLab) {
    testPair = await readIdxPair({ images: teImg.path, labels: teLab.path }, { images: teImg.ref, labels: teLab.ref });
    if (testPair.images.rows !== trainPair.images.rows || testPair.images.cols !== trainPair.images.cols) {
      fail(
        describeProblem({
          file: rf,
          field: 'data.test.images',
          expected: `images of ${trainPair.images.rows} x ${trainPair.images.cols} like ${trImg.ref.file}`,
          found: `${testPair.images.rows} x ${testPair.images.cols} in ${teImg.ref.file}`,
          fix: 'Use train and test files of the same data set',
        }),
      );
    }
  }
  const { rows, cols } = trainPair.images;
  const inputShape = [rows, cols, 1];
  const F = rows * cols;
  const saved = opts.preprocess;

  // labels: class names are the byte values present, as strings, sorted numerically
  let labels: string[];
  if (saved) {
    checkSavedShape(saved, inputShape, where(rf, 'data.train.images'));
    labels = saved.labels;
  } else {
    const present = new Set<number>();
    for (const v of trainPair.labels.data) present.add(v);
    if (testPair) for (const v of testPair.labels.data) present.add(v);
    labels = sortLabels([...present].map(String));
  }
  const lut = new Int32Array(256).fill(-1);
  labels.forEach((l, i) => {
    const v = Number(l);
    if (Number.isInteger(v) && v >= 0 && v < 256) lut[v] = i;
  });
  const mapLabels = (lab: IdxLabels, ref: SourceRef, n: number): Int32Array => {
    const y = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const id = lut[lab.data[i]];
      if (id < 0) unknownLabel(String(lab.data[i]), labels, `${sourceLabel(ref)}: sample ${i}`);
      y[i] = id;
    }
    return y;
  };

  const yTrainAll = mapLabels(trainPair.labels, trLab.ref, trainPair.labels.count);
  const split = checkedSplit(yTrainAll, labels, cfg.split.validation, opts.seed, sourceLabel(trLab.ref));
  const trainIdx = cfg.limit !== undefined ? split.train.subarray(0, cfg.limit) : split.train;
  const train = gather(trainPair.images.data, F, yTrainAll, trainIdx);
  const validation = gather(trainPair.images.data, F, yTrainAll, split.validation);
  let test: Split | null = null;
  if (testPair && teLab) {
    const n = Math.min(testPair.images.count, cfg.test_limit ?? Infinity);
    const yTest = mapLabels(testPair.labels, teLab.ref, n);
    const idx = new Int32Array(n);
    for (let i = 0; i < n; i++) idx[i] = i;
    test = gather(testPair.images.data, F, yTest, idx);
  }

  const normalize = saved ? saved.normalize : computeNormalize(cfg.normalize, train.x, F, 'scalar');
  applyNormalize(train.x, F, normalize);
  applyNormalize(validation.x, F, normalize);
  if (test) applyNormalize(test.x, F, normalize);

  const sources = [trImg.path, trLab.path];
  if (teImg && teLab) sources.push(teImg.path, teLab.path);
  return { train, validation, test, preprocess: { labels, inputShape, normalize }, sources };
}
