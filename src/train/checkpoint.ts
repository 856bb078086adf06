import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import type { Graph, WeightMap } from '../models/graph.js';
import { inferShapes, paramShapes, weightKey } from '../models/graph.js';
import { RecipeSchema, type Recipe } from '../recipe/schema.js';
import type { Preprocess } from '../data/index.js';
import { HepolyError } from '../util/errors.js';
import { readableDir, writeDirAtomic, type FileContents } from '../util/atomic-dir.js';
import { shortPath } from '../util/paths.js';

/**
 * A checkpoint directory: everything needed to evaluate, resume, summarize or encrypt a run.
 *   model.json       graph + weight manifest + sha256 of weights.bin (written last: its
 *                    presence and hash make the directory complete)
 *   weights.bin      float32 little-endian, in manifest order
 *   optimizer.json/.bin   optimizer state for --resume
 *   recipe.yaml      the resolved recipe (extends and --set applied)
 *   preprocess.json  label mapping, input shape, normalization statistics
 *   metrics.csv      one row per epoch
 *   ranges.json      observed input range of every activation (after the last epoch)
 *   summary.json     per-layer table (shapes, params, ranges, HE depth)
 *   state.json       epochs done, whether training finished, backend, seed
 */

export interface RangeStat {
  min: number;
  max: number;
  /** 0.1th and 99.9th percentiles */
  p001: number;
  p999: number;
}

export interface Ranges {
  input: RangeStat;
  /** keyed by activation node name: statistics of that activation's input */
  activations: Record<string, RangeStat>;
}

export interface TrainState {
  epochs_done: number;
  complete: boolean;
  backend: string;
  seed: number;
  stopped_early?: boolean;
  /** the folder training ran in: relative data paths of the recipe are also read from there */
  data_root?: string;
}

export interface OptimizerState {
  names: string[];
  shapes: number[][];
  data: Float32Array[];
}

export const METRIC_COLUMNS = ['epoch', 'loss', 'accuracy', 'val_loss', 'val_accuracy', 'lr', 'samples_per_s', 'seconds'] as const;
export type MetricsRow = Record<(typeof METRIC_COLUMNS)[number], number> & Record<string, number>;

export interface Checkpoint {
  dir: string;
  graph: Graph;
  weights: WeightMap;
  recipe: Recipe;
  preprocess: Preprocess;
  ranges: Ranges | null;
  metrics: MetricsRow[];
  state: TrainState;
  optimizer: OptimizerState | null;
  summary: unknown;
  /** pruning record and masks (prune.json), kept so fine-tuning and --resume hold the mask */
  prune?: unknown;
}

const FORMAT = 'hepoly-checkpoint';
const VERSION = 1;

interface Manifest {
  format: string;
  version: number;
  graph: Graph;
  weights: { name: string; shape: number[] }[];
  weights_bytes: number;
  weights_sha256: string;
  files: Record<string, { bytes: number; sha256: string }>;
}

function sha256(b: Uint8Array | string): string {
  return createHash('sha256').update(b).digest('hex');
}

function packFloats(arrays: Float32Array[]): Uint8Array {
  const total = arrays.reduce((a, b) => a + b.length, 0);
  const out = new Float32Array(total);
  let off = 0;
  for (const a of arrays) {
    out.set(a, off);
    off += a.length;
  }
  return new Uint8Array(out.buffer);
}

export function metricsToCsv(rows: MetricsRow[]): string {
  const extra = [...new Set(rows.flatMap((r) => Object.keys(r)))].filter((k) => !(METRIC_COLUMNS as readonly string[]).includes(k));
  const cols = [...METRIC_COLUMNS, ...extra];
  return [cols.join(','), ...rows.map((r) => cols.map((c) => (r[c] === undefined ? '' : +r[c].toPrecision(6))).join(','))].join('\n') + '\n';
}

function csvToMetrics(text: string): MetricsRow[] {
  const [head, ...rows] = text.trim().split('\n');
  const cols = head.split(',');
  return rows.filter(Boolean).map((line) => {
    const cells = line.split(',');
    const row: Record<string, number> = {};
    cols.forEach((c, i) => {
      if (cells[i] !== '') row[c] = Number(cells[i]);
    });
    return row as MetricsRow;
  });
}

export interface CheckpointContents {
  graph: Graph;
  weights: WeightMap;
  recipe: Recipe;
  preprocess: Preprocess;
  ranges: Ranges | null;
  metrics: MetricsRow[];
  state: TrainState;
  optimizer: OptimizerState | null;
  summary: unknown;
  /** written as prune.json when present (src/train/prune.ts) */
  prune?: unknown;
}

export function saveCheckpoint(dir: string, c: CheckpointContents): void {
  const names = [...c.weights.keys()];
  const weightsBin = packFloats(names.map((n) => c.weights.get(n)!.data));
  const files: [string, FileContents][] = [
    ['weights.bin', weightsBin],
    ['recipe.yaml', `# resolved recipe (extends and --set applied)\n${stringifyYaml(c.recipe)}`],
    ['preprocess.json', JSON.stringify(c.preprocess, null, 1)],
    ['metrics.csv', metricsToCsv(c.metrics)],
    ['state.json', JSON.stringify(c.state, null, 2)],
    ['summary.json', JSON.stringify(c.summary, null, 2)],
  ];
  if (c.ranges) files.push(['ranges.json', JSON.stringify(c.ranges, null, 2)]);
  if (c.prune) files.push(['prune.json', JSON.stringify(c.prune)]);
  if (c.optimizer) {
    files.push(['optimizer.bin', packFloats(c.optimizer.data)]);
    files.push(['optimizer.json', JSON.stringify({ names: c.optimizer.names, shapes: c.optimizer.shapes })]);
  }
  const manifest: Manifest = {
    format: FORMAT,
    version: VERSION,
    graph: c.graph,
    weights: names.map((n) => ({ name: n, shape: c.weights.get(n)!.shape })),
    weights_bytes: weightsBin.length,
    weights_sha256: sha256(weightsBin),
    files: Object.fromEntries(files.map(([n, b]) => [n, { bytes: Buffer.byteLength(b), sha256: sha256(b) }])),
  };
  files.push(['model.json', JSON.stringify(manifest, null, 1)]);
  writeDirAtomic(resolve(dir), files, isCompleteCheckpoint);
}

function isCompleteCheckpoint(dir: string): boolean {
  try {
    readManifest(dir);
    return true;
  } catch {
    return false;
  }
}

/**
 * How far training got; `note` is set when it stopped before its last epoch (killed, interrupted).
 * A federated checkpoint (recipe has `federated:`) counts aggregation rounds (horizontal) or epochs
 * over the joined rows (vertical): its state.json records one epoch per round (local_epochs are
 * inside a round), so the plan is federated.rounds, not train.epochs, which `hepoly federate` does
 * not run. It is written once, after its last round, so it is complete.
 */
export interface TrainingStatus {
  trained_epochs: number;
  planned_epochs: number;
  complete: boolean;
  note: string | null;
}

export function trainingStatus(c: Checkpoint): TrainingStatus {
  const fed = c.recipe.federated;
  const planned = fed ? fed.rounds : c.recipe.train.epochs;
  const done = c.state.epochs_done;
  const finished = c.state.complete && (done >= planned || !!c.state.stopped_early);
  const note = finished
    ? null
    : `note: ${shortPath(c.dir)} was trained ${done} of ${planned} epochs (training stopped before its end); continue it with \`hepoly train RECIPE --resume --out ${shortPath(c.dir)}\``;
  return { trained_epochs: done, planned_epochs: planned, complete: finished, note };
}

/**
 * "a checkpoint trained 12 of 30 epochs" when `dir` is a complete hepoly checkpoint, else null:
 * what the output guard shows before it agrees to replace a folder.
 */
export function describeCheckpoint(dir: string): string | null {
  if (!isCompleteCheckpoint(dir)) return null;
  try {
    const state = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as TrainState;
    const recipe = parseYaml(readFileSync(join(dir, 'recipe.yaml'), 'utf8')) as { train?: { epochs?: number }; federated?: { rounds?: number } };
    // a federated run plans federated.rounds (as trainingStatus)
    if (recipe.federated) return `a hepoly checkpoint (federated, ${state.epochs_done} of ${recipe.federated.rounds ?? '?'} rounds)`;
    return `a hepoly checkpoint (trained ${state.epochs_done} of ${recipe.train?.epochs ?? '?'} epochs${state.complete ? '' : ', unfinished'})`;
  } catch {
    return 'a hepoly checkpoint';
  }
}

function corrupt(dir: string, what: string): HepolyError {
  return new HepolyError(
    `${shortPath(dir)}: not a usable hepoly checkpoint: ${what}. Retrain it with \`hepoly train RECIPE --out ${shortPath(dir)}\` (or point to another checkpoint directory)`,
  );
}

function readManifest(dir: string): Manifest {
  const path = join(dir, 'model.json');
  if (!existsSync(path)) throw corrupt(dir, 'model.json is missing');
  let m: Manifest;
  try {
    m = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
  } catch (e) {
    throw corrupt(dir, `model.json is not valid JSON (${(e as Error).message})`);
  }
  if (m.format !== FORMAT) throw corrupt(dir, `model.json has format ${JSON.stringify(m.format)}, expected "${FORMAT}"`);
  if (m.version !== VERSION) throw corrupt(dir, `model.json has version ${m.version}, this hepoly reads version ${VERSION}`);
  for (const [name, { bytes, sha256: hash }] of Object.entries(m.files ?? {})) {
    const p = join(dir, name);
    if (!existsSync(p)) throw corrupt(dir, `${name} is missing`);
    const size = statSync(p).size;
    if (size !== bytes) throw corrupt(dir, `${name} has ${size} bytes, expected ${bytes} (truncated or overwritten)`);
    if (sha256(readFileSync(p)) !== hash) throw corrupt(dir, `${name} does not match its checksum in model.json (corrupted)`);
  }
  return m;
}

function unpackFloats(buf: Buffer, shapes: number[][], dir: string, file: string): Float32Array[] {
  const all = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
  const out: Float32Array[] = [];
  let off = 0;
  for (const s of shapes) {
    const n = s.reduce((a, b) => a * b, 1);
    if (off + n > all.length) throw corrupt(dir, `${file} is shorter than its manifest`);
    out.push(all.slice(off, off + n));
    off += n;
  }
  return out;
}

/** Reads and verifies a checkpoint (size and checksum of every file). */
export function loadCheckpoint(dirArg: string): Checkpoint {
  const dir = readableDir(resolve(dirArg), isCompleteCheckpoint);
  if (!dir) {
    throw new HepolyError(`checkpoint not found: ${dirArg}. Train one with \`hepoly train RECIPE\` (checkpoints go to checkpoints/<name>/ unless --out is given)`);
  }
  if (!statSync(dir).isDirectory()) throw corrupt(dir, 'it is a file, not a directory');
  const m = readManifest(dir);
  const read = (f: string) => readFileSync(join(dir, f), 'utf8');
  const json = <T>(f: string): T => {
    try {
      return JSON.parse(read(f), f === 'ranges.json' || f === 'summary.json' ? overflowAsNaN : undefined) as T;
    } catch (e) {
      throw corrupt(dir, `${f} is not valid JSON (${(e as Error).message})`);
    }
  };
  const buf = readFileSync(join(dir, 'weights.bin'));
  const arrays = unpackFloats(buf, m.weights.map((w) => w.shape), dir, 'weights.bin');
  const weights: WeightMap = new Map(m.weights.map((w, i) => [w.name, { shape: w.shape, data: arrays[i] }]));
  checkWeightsMatchGraph(m.graph, weights, dir);
  const recipeParsed = RecipeSchema.safeParse(parseYaml(read('recipe.yaml')));
  if (!recipeParsed.success) throw corrupt(dir, `recipe.yaml does not validate (${recipeParsed.error.issues[0]?.message})`);
  let optimizer: OptimizerState | null = null;
  if (m.files['optimizer.json']) {
    const o = json<{ names: string[]; shapes: number[][] }>('optimizer.json');
    optimizer = { ...o, data: unpackFloats(readFileSync(join(dir, 'optimizer.bin')), o.shapes, dir, 'optimizer.bin') };
  }
  return {
    dir,
    graph: m.graph,
    weights,
    recipe: recipeParsed.data,
    preprocess: json<Preprocess>('preprocess.json'),
    ranges: m.files['ranges.json'] ? json<Ranges>('ranges.json') : null,
    metrics: csvToMetrics(read('metrics.csv')),
    state: json<TrainState>('state.json'),
    optimizer,
    summary: json<unknown>('summary.json'),
    ...(m.files['prune.json'] ? { prune: json<unknown>('prune.json') } : {}),
  };
}

const RANGE_FIELDS = new Set(['min', 'max', 'p001', 'p999']);

/** JSON writes an overflowed range (NaN, Infinity) as null; read back it is NaN, a number every reader formats. */
function overflowAsNaN(key: string, value: unknown): unknown {
  return value === null && RANGE_FIELDS.has(key) ? NaN : value;
}

function checkWeightsMatchGraph(graph: Graph, weights: WeightMap, dir: string): void {
  let shapes: Map<string, number[]>;
  try {
    shapes = inferShapes(graph);
  } catch (e) {
    throw corrupt(dir, `its graph is inconsistent (${(e as Error).message})`);
  }
  for (const node of graph.nodes) {
    for (const [param, shape] of Object.entries(paramShapes(node, shapes.get(node.inputs[0])!))) {
      const w = weights.get(weightKey(node.name, param));
      if (!w) throw corrupt(dir, `weight ${weightKey(node.name, param)} is missing`);
      if (w.shape.join(',') !== shape.join(',')) {
        throw corrupt(dir, `weight ${weightKey(node.name, param)} has shape [${w.shape}], the graph needs [${shape}]`);
      }
    }
  }
}
