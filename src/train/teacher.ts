import { existsSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { DistillConfig } from '../recipe/schema.js';
import type { Preprocess } from '../data/index.js';
import { loadCheckpoint } from './checkpoint.js';
import { forward } from '../models/tf-interpreter.js';
import { toParams } from './evaluate.js';
import { HepolyError } from '../util/errors.js';
import { shippedRecipes } from '../recipe/load.js';
import { shortPath } from '../util/paths.js';
import { loadOnnxRuntime } from '../util/onnxruntime.js';
import { resolvePretrained } from './teacher-path.js';

/**
 * A pretrained teacher for distillation: a hepoly checkpoint (any activation) or an ONNX file
 * (PyTorch / Keras export, run by onnxruntime-node, an optional dependency). Either way it is fed exactly the
 * student's preprocessed input, and its logits for the whole training set are computed once
 * up front, so the training step stays synchronous and the teacher costs one inference pass.
 */
export interface Teacher {
  description: string;
  /** which file was chosen and why (the user's own checkpoint or the shipped teacher) */
  source: string;
  /** logits for `count` samples laid out as the student's input (NHWC) */
  logits(x: Float32Array, count: number): Promise<Float32Array>;
  dispose(): void;
}

export async function loadTeacher(cfg: DistillConfig, inputShape: number[], preprocess: Preprocess, recipeFile: string): Promise<Teacher> {
  const chosen = resolvePretrained(cfg.teacher, 'distill.teacher');
  const path = chosen.path;
  const where = `${recipeFile}: distill.teacher`;
  if (!existsSync(path)) {
    const shipped = shippedRecipes().get(basename(path));
    if (shipped) {
      throw new HepolyError(`${where}: ${cfg.teacher} not found: train the teacher first with \`hepoly train ${shortPath(shipped)}\` (it writes checkpoints/${basename(path)})`);
    }
    throw new HepolyError(`${where}: ${cfg.teacher} not found. Point it at a hepoly checkpoint directory (e.g. checkpoints/fmnist-cnn-relu, made by hepoly train) or an .onnx file`);
  }
  const classes = preprocess.labels.length;
  const teacher = statSync(path).isDirectory() ? checkpointTeacher(path, inputShape, preprocess, where) : await onnxTeacher(path, cfg, inputShape, classes, where);
  return { ...teacher, source: chosen.note };
}

function checkpointTeacher(dir: string, inputShape: number[], preprocess: Preprocess, where: string): Omit<Teacher, 'source'> {
  const ckpt = loadCheckpoint(dir);
  if (ckpt.graph.inputShape.join(',') !== inputShape.join(',')) {
    throw new HepolyError(`${where}: the teacher ${shortPath(dir)} takes input [${ckpt.graph.inputShape.join(', ')}], the data gives [${inputShape.join(', ')}]. Use a teacher trained on the same data`);
  }
  if (ckpt.preprocess.labels.join('\u0000') !== preprocess.labels.join('\u0000')) {
    throw new HepolyError(
      `${where}: the teacher ${shortPath(dir)} predicts ${ckpt.preprocess.labels.length} classes [${ckpt.preprocess.labels.join(', ')}], the data has ${preprocess.labels.length} [${preprocess.labels.join(', ')}]. Use a teacher trained on the same labels`,
    );
  }
  if (JSON.stringify(ckpt.preprocess.normalize) !== JSON.stringify(preprocess.normalize)) {
    throw new HepolyError(`${where}: the teacher ${shortPath(dir)} was trained on differently normalized inputs (data.normalize). Use the same data section as the teacher's recipe`);
  }
  const params = toParams(ckpt.weights);
  const per = inputShape.reduce((a, b) => a * b, 1);
  return {
    description: `hepoly checkpoint ${shortPath(dir)} (${ckpt.recipe.name})`,
    async logits(x, count) {
      const out = new Float32Array(count * ckpt.graph.classes);
      for (let s = 0; s < count; s += 256) {
        const n = Math.min(256, count - s);
        const l = tf.tidy(() => forward(ckpt.graph, params, tf.tensor(x.subarray(s * per, (s + n) * per), [n, ...inputShape]), { training: false }).logits);
        out.set(l.dataSync(), s * ckpt.graph.classes);
        l.dispose();
      }
      return out;
    },
    dispose: () => params.forEach((t) => t.dispose()),
  };
}

/** Decides whether the ONNX input is NCHW or NHWC from its declared shape. */
export function onnxLayout(dims: readonly (number | string | null)[], inputShape: number[], forced: 'nchw' | 'nhwc' | undefined, where: string): 'nchw' | 'nhwc' | 'flat' {
  const sample = dims.slice(1).map((d) => (typeof d === 'number' && d > 0 ? d : null));
  const per = inputShape.reduce((a, b) => a * b, 1);
  if (inputShape.length === 1 || sample.length === 1) {
    if (sample.length !== 1 || (sample[0] !== null && sample[0] !== per)) {
      const takes = sample.length === 1 ? `${sample[0]} features` : `input [${dims.join(', ')}]`;
      const gives = inputShape.length === 1 ? `${per} features` : `images [${inputShape.join(', ')}]`;
      throw new HepolyError(`${where}: the ONNX teacher takes ${takes}, the data gives ${gives}. Use a teacher trained on the same data`);
    }
    return 'flat';
  }
  const [h, w, c] = inputShape;
  const nchw = [c, h, w];
  const nhwc = [h, w, c];
  const fits = (want: number[]) => sample.length === 3 && sample.every((d, i) => d === null || d === want[i]);
  if (forced) {
    if (!fits(forced === 'nchw' ? nchw : nhwc)) {
      throw new HepolyError(`${where}: the ONNX teacher's input is [${dims.join(', ')}], which is not ${forced.toUpperCase()} for data [${inputShape.join(', ')}] (expected [N, ${(forced === 'nchw' ? nchw : nhwc).join(', ')}]). Fix distill.teacher_layout or the export`);
    }
    return forced;
  }
  const a = fits(nchw);
  const b = fits(nhwc);
  if (a && !b) return 'nchw';
  if (b && !a) return 'nhwc';
  if (a && b) {
    throw new HepolyError(`${where}: cannot tell from the ONNX input shape [${dims.join(', ')}] whether it is NCHW or NHWC. Set distill.teacher_layout: nchw (PyTorch exports) or nhwc (Keras exports)`);
  }
  throw new HepolyError(`${where}: the ONNX teacher's input is [${dims.join(', ')}], the data gives images [${inputShape.join(', ')}] (NHWC). Use a teacher trained on the same data (expected [N, ${nchw.join(', ')}] or [N, ${nhwc.join(', ')}])`);
}

async function onnxTeacher(path: string, cfg: DistillConfig, inputShape: number[], classes: number, where: string): Promise<Omit<Teacher, 'source'>> {
  // loaded here, not at the top: onnxruntime-node is optional and only ONNX teachers need it
  const ort = await loadOnnxRuntime(where);
  let session: Awaited<ReturnType<typeof ort.InferenceSession.create>>;
  try {
    session = await ort.InferenceSession.create(path);
  } catch (e) {
    throw new HepolyError(`${where}: cannot read ${shortPath(path)} as an ONNX model (${(e as Error).message.split('\n')[0]}). Export it again (torch.onnx.export or tf2onnx) or check the path`);
  }
  const inputName = session.inputNames[0];
  const outputName = session.outputNames[0];
  const meta = (session as unknown as { inputMetadata?: { name: string; isTensor: boolean; shape?: (number | string)[] }[] }).inputMetadata;
  const dims = meta?.[0]?.shape ?? [];
  const layout = dims.length ? onnxLayout(dims, inputShape, cfg.teacher_layout, where) : (cfg.teacher_layout ?? (inputShape.length === 1 ? 'flat' : 'nchw'));
  const per = inputShape.reduce((a, b) => a * b, 1);
  const run = async (x: Float32Array, n: number): Promise<Float32Array> => {
    let data = x;
    let shape = [n, ...inputShape];
    if (layout === 'nchw') {
      const [h, w, c] = inputShape;
      data = new Float32Array(x.length);
      for (let b = 0; b < n; b++)
        for (let i = 0; i < h * w; i++) for (let ch = 0; ch < c; ch++) data[b * per + ch * h * w + i] = x[b * per + i * c + ch];
      shape = [n, c, h, w];
    }
    let result: Awaited<ReturnType<typeof session.run>>;
    try {
      result = await session.run({ [inputName]: new ort.Tensor('float32', data, shape) });
    } catch (e) {
      throw new HepolyError(`${where}: the ONNX teacher rejected input [${shape.join(', ')}]: ${(e as Error).message.split('\n')[0]}. Check that it was exported for this data (or set distill.teacher_layout)`);
    }
    const out = result[outputName];
    const outDims = out.dims;
    if (outDims.length !== 2 || outDims[1] !== classes) {
      throw new HepolyError(`${where}: the ONNX teacher outputs shape [${outDims.join(', ')}], the data has ${classes} classes (expected [N, ${classes}] logits). Use a teacher trained on the same labels`);
    }
    return out.data as Float32Array;
  };
  return {
    description: `ONNX ${shortPath(path)} (${layout === 'flat' ? 'flat input' : layout.toUpperCase()})`,
    async logits(x, count) {
      const out = new Float32Array(count * classes);
      for (let s = 0; s < count; s += 256) {
        const n = Math.min(256, count - s);
        out.set(await run(x.subarray(s * per, (s + n) * per), n), s * classes);
      }
      return out;
    },
    dispose: () => void session.release(),
  };
}
