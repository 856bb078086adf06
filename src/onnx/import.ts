import { readFileSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { Recipe } from '../recipe/schema.js';
import { loadRecipe } from '../recipe/load.js';
import { shortPath } from '../util/paths.js';
import { loadData, type Split } from '../data/index.js';
import { predict } from '../models/tf-interpreter.js';
import { summarize } from '../models/summary.js';
import { evaluateWithRanges, toParams } from '../train/evaluate.js';
import { saveCheckpoint } from '../train/checkpoint.js';
import { claimCheckpointDir } from '../train/loop.js';
import { HepolyError } from '../util/errors.js';
import { readOnnxModel } from './read.js';
import { importOnnxGraph, type ImportedNetwork } from './import-graph.js';
import type { ImportedActivation } from './import-state.js';
import { modelSection } from './model-section.js';
import { runOnnx } from './ort.js';

export interface ImportCheckpointOptions {
  model: string;
  /** recipe whose `data:` section (and optional `name:`) describes the data */
  data: string;
  layout?: 'nchw' | 'nhwc';
  out?: string;
  /** replace an existing checkpoint at `out` (anything else there is always refused) */
  overwrite?: boolean;
  /** tfjs backend name, recorded in state.json */
  backend: string;
  log?: (line: string) => void;
}

export interface ImportResult {
  checkpoint: string;
  layers: string[];
  activations: ImportedActivation[];
  layout: string;
  split: 'test' | 'validation';
  samples: number;
  accuracy: number;
  onnx_accuracy: number;
  max_abs_diff: number;
  /** largest |logit| of onnxruntime on that split: the scale max_abs_diff is judged against */
  max_abs_logit: number;
  model_section: 'exact' | 'stand-in';
}

/** |logit| differences above this (times the largest |logit|, at least 1) mean the import misread an op. */
export const LOGIT_TOLERANCE = 1e-4;

/**
 * `hepoly import`: ONNX model + the data it was trained on -> a complete hepoly checkpoint
 * (ranges measured on the train split, summary, the resolved recipe), checked against
 * onnxruntime on the held-out split before anything is written.
 */
export async function importCheckpoint(o: ImportCheckpointOptions): Promise<ImportResult> {
  const modelName = safeName(basename(o.model, extname(o.model)));
  const claim = claimCheckpointDir(o.out ?? join('checkpoints', modelName), { overwrite: o.overwrite, flag: '--out' });
  try {
    return await importInto(claim.dir, o);
  } finally {
    claim.release();
  }
}

async function importInto(out: string, o: ImportCheckpointOptions): Promise<ImportResult> {
  const log = o.log ?? (() => {});
  const modelFile = resolve(o.model);
  const onnx = readOnnxModel(modelFile);
  const { recipe, recipeFile } = dataRecipe(o.data, modelFile);
  const data = await loadData(recipe.data, { seed: recipe.seed, recipeFile });
  const net = importOnnxGraph(onnx, {
    file: modelFile,
    dataShape: data.preprocess.inputShape,
    classes: data.preprocess.labels.length,
    dataWhere: `${recipeFile}: data`,
    layout: o.layout,
  });
  log(`imported ${shortPath(modelFile)} (${net.layout.toUpperCase()} input, opset ${net.opset}): ${net.graph.nodes.map((n) => n.layer.op).join(' -> ')}`);
  for (const a of net.activations) log(`  activation ${a.name}: ${a.kind} [${a.coeffs.map((c) => +c.toPrecision(4)).join(', ')}] from ${a.onnx_nodes.length} ONNX nodes`);
  const held = data.test ? { name: 'test' as const, split: data.test } : { name: 'validation' as const, split: data.validation };
  const check = await compareWithOnnxruntime(modelFile, net, held.split);
  log(`${held.name} split, ${held.split.count} samples: accuracy ${check.accuracy.toFixed(4)} (onnxruntime ${check.onnxAccuracy.toFixed(4)}), max |logit difference| ${check.maxAbsDiff.toExponential(2)}`);
  const { model, exact } = modelSection(net.graph);
  const params = toParams(net.weights);
  try {
    const r = evaluateWithRanges(net.graph, params, data.train);
    const ranges = { input: r.input, activations: r.activations };
    const imported: Recipe = {
      ...withoutTraining(recipe),
      description: `imported from ${basename(modelFile)} by hepoly import${exact ? '' : '; model: is a stand-in, the network is the graph in model.json'}`,
      model,
    };
    saveCheckpoint(out, {
      graph: net.graph,
      weights: net.weights,
      recipe: imported,
      preprocess: data.preprocess,
      ranges,
      metrics: [],
      // trained elsewhere, to its end: nothing for --resume to continue, no "stopped before its end" note
      state: { epochs_done: imported.train.epochs, complete: true, backend: o.backend, seed: recipe.seed },
      optimizer: null,
      summary: {
        ...summarize(net.graph, ranges),
        train_accuracy: r.accuracy,
        val_accuracy: null,
        test_accuracy: held.name === 'test' ? check.accuracy : null,
        imported_from: { file: basename(modelFile), layout: net.layout, opset: net.opset, activations: net.activations, max_abs_diff: check.maxAbsDiff, onnx_accuracy: check.onnxAccuracy },
      },
    });
  } finally {
    params.forEach((t) => t.dispose());
  }
  return {
    checkpoint: out,
    layers: net.graph.nodes.map((n) => n.layer.op),
    activations: net.activations,
    layout: net.layout,
    split: held.name,
    samples: held.split.count,
    accuracy: check.accuracy,
    onnx_accuracy: check.onnxAccuracy,
    max_abs_diff: check.maxAbsDiff,
    max_abs_logit: check.maxAbsLogit,
    model_section: exact ? 'exact' : 'stand-in',
  };
}

/** The recipe file read for its data section: its own model/train sections, if any, are not needed. */
function dataRecipe(path: string, modelFile: string): { recipe: Recipe; recipeFile: string } {
  let ownName = false;
  try {
    const raw = parseYaml(readFileSync(resolve(path), 'utf8')) as Record<string, unknown> | null;
    ownName = !!raw && typeof raw === 'object' && 'name' in raw;
  } catch {
    // unreadable or not YAML: loadRecipe below says so with the file and line
  }
  const overrides = ['model={kind: mlp}', ...(ownName ? [] : [`name=${safeName(basename(modelFile, extname(modelFile)))}`])];
  const { recipe, file } = loadRecipe(path, overrides);
  if (recipe.data.source === 'text') throw new HepolyError(`${shortPath(file)}: data.source: text data feeds language models, which hepoly cannot import from ONNX. Use csv or idx data`);
  return { recipe, recipeFile: shortPath(file) };
}

function withoutTraining(r: Recipe): Recipe {
  const { distill: _d, prune: _p, range: _r, init_from: _i, ...rest } = r;
  return rest as Recipe;
}

const safeName = (s: string) => s.replace(/[^A-Za-z0-9._-]/g, '-') || 'imported';

function argmaxAccuracy(logits: Float32Array, y: Int32Array, classes: number): number {
  let hits = 0;
  for (let i = 0; i < y.length; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++) if (logits[i * classes + c] > logits[i * classes + best]) best = c;
    if (best === y[i]) hits++;
  }
  return y.length ? hits / y.length : NaN;
}

/** hepoly's logits vs onnxruntime's on the same samples; refuses the import when they differ. */
export async function compareWithOnnxruntime(file: string, net: ImportedNetwork, split: Split): Promise<{ accuracy: number; onnxAccuracy: number; maxAbsDiff: number; maxAbsLogit: number }> {
  const { graph } = net;
  const ours = predict(graph, net.weights, split.x, split.count);
  const theirs = await runOnnx(file, split.x, split.count, {
    inputShape: graph.inputShape,
    layout: net.layout,
    classes: graph.classes,
    batchFixed: net.batchFixed,
    why: `checking ${shortPath(file)} against onnxruntime`,
  });
  let maxAbsDiff = 0;
  let maxAbs = 0;
  let worst = 0;
  for (let i = 0; i < ours.length; i++) {
    const d = Math.abs(ours[i] - theirs[i]);
    if (!(d <= maxAbsDiff)) {
      maxAbsDiff = d;
      worst = i;
    }
    maxAbs = Math.max(maxAbs, Math.abs(theirs[i]));
  }
  if (!(maxAbsDiff <= LOGIT_TOLERANCE * Math.max(1, maxAbs))) {
    throw new HepolyError(
      `${shortPath(file)}: the imported network's logits differ from onnxruntime's by up to ${maxAbsDiff.toExponential(3)} (sample ${Math.floor(worst / graph.classes)}, logit ${worst % graph.classes}; tolerance ${LOGIT_TOLERANCE} x max(1, |logit|)), so nothing was written. hepoly misread an op of this model: please report it with the file`,
    );
  }
  return { accuracy: argmaxAccuracy(ours, split.y, graph.classes), onnxAccuracy: argmaxAccuracy(theirs, split.y, graph.classes), maxAbsDiff, maxAbsLogit: maxAbs };
}


