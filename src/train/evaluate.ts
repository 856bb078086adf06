import { shortPath } from '../util/paths.js';
import * as tf from '@tensorflow/tfjs-core';
import type { Graph } from '../models/graph.js';
import { forward, type ParamMap } from '../models/tf-interpreter.js';
import type { Split } from '../data/index.js';
import { loadData } from '../data/index.js';
import type { Checkpoint } from './checkpoint.js';
import { RangeAccumulator } from './ranges.js';
import type { RangeStat } from './checkpoint.js';

export interface EvalResult {
  loss: number;
  accuracy: number;
  samples: number;
}

export function toParams(weights: Map<string, { shape: number[]; data: Float32Array }>): ParamMap {
  const params: ParamMap = new Map();
  for (const [k, w] of weights) params.set(k, tf.tensor(w.data, w.shape));
  return params;
}

/** Batched inference over a split: mean cross-entropy and accuracy (inference-mode batchnorm). */
export function evaluateSplit(
  graph: Graph,
  params: ParamMap,
  split: Split,
  batch = 256,
  onBatch?: (acts: Map<string, tf.Tensor>, x: tf.Tensor) => void,
): EvalResult {
  const per = graph.inputShape.reduce((a, b) => a * b, 1);
  let lossSum = 0;
  let correct = 0;
  for (let start = 0; start < split.count; start += batch) {
    const n = Math.min(batch, split.count - start);
    const [l, c] = tf.tidy(() => {
      const xb = tf.tensor(split.x.subarray(start * per, (start + n) * per), [n, ...graph.inputShape]);
      const yb = tf.tensor1d(split.y.subarray(start, start + n), 'int32');
      const out = forward(graph, params, xb, { training: false, recordActivationInputs: !!onBatch });
      onBatch?.(out.activationInputs, xb);
      const loss = tf.losses.softmaxCrossEntropy(tf.oneHot(yb, graph.classes), out.logits, undefined, undefined, tf.Reduction.SUM);
      const hits = tf.sum(tf.cast(tf.equal(tf.argMax(out.logits, 1), yb), 'float32'));
      return [loss.dataSync()[0], hits.dataSync()[0]];
    });
    lossSum += l;
    correct += c;
  }
  return { loss: split.count ? lossSum / split.count : NaN, accuracy: split.count ? correct / split.count : NaN, samples: split.count };
}

/** Evaluation plus the observed range of every activation input and of the network input. */
export function evaluateWithRanges(graph: Graph, params: ParamMap, split: Split, batch = 256): EvalResult & { input: RangeStat; activations: Record<string, RangeStat> } {
  const accs = new Map<string, RangeAccumulator>();
  const input = new RangeAccumulator();
  const res = evaluateSplit(graph, params, split, batch, (acts, x) => {
    input.add(x);
    for (const [name, t] of acts) {
      if (!accs.has(name)) accs.set(name, new RangeAccumulator());
      accs.get(name)!.add(t);
    }
  });
  return { ...res, input: input.result(), activations: Object.fromEntries([...accs].map(([k, a]) => [k, a.result()])) };
}

/** The held-out split of a checkpoint's data: the test set when the data has one, else validation. */
/**
 * The checkpoint's held-out split. Its recipe's relative data paths are read from the current
 * folder, then `dataRoot` (--data), then the folder it was trained in, so a checkpoint works
 * from anywhere; errors name the checkpoint's recipe.yaml.
 */
export async function heldOutSplit(ckpt: Checkpoint, dataRoot?: string): Promise<{ name: 'test' | 'validation'; x: Float32Array; y: Int32Array; count: number }> {
  const dataRoots = [dataRoot, ckpt.state.data_root].filter((r): r is string => !!r);
  const recipeFile = `${shortPath(ckpt.dir)}/recipe.yaml`;
  const data = await loadData(ckpt.recipe.data, { seed: ckpt.recipe.seed, preprocess: ckpt.preprocess, dataRoots, recipeFile });
  if (data.test) return { name: 'test', ...data.test };
  return { name: 'validation', ...data.validation };
}
