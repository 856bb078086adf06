import * as tf from '@tensorflow/tfjs-core';
import type { Graph, WeightMap } from '../models/graph.js';
import { weightKey } from '../models/graph.js';
import { opOf } from '../ops/registry.js';
import { forward, type ParamMap } from '../models/tf-interpreter.js';
import type { Split } from '../data/index.js';
import { median } from '../util/stats.js';

/**
 * Re-estimates every batchnorm's moving mean and variance for the weights as they are now.
 * Why: `init_from` copies a ReLU teacher's moving statistics into a student whose activations
 * differ (a quadratic's outputs are not a ReLU's), so inference-mode batchnorm normalizes with
 * statistics of another network; in a deep ResNet the mismatch compounds and evaluation
 * overflows to NaN while training (which normalizes with batch statistics) looks fine. The same
 * happens at the end of training when one late batch with an outlier sample inflated a moving
 * variance (resnet-poly: 15,099 in one batch of 64 where the others stay below 24).
 * Per channel, the median over `batches` training-mode batches replaces them: no momentum (the
 * old values carry no information about this network), and no mean, which that one batch would
 * still set. Returns the number of batchnorm layers set.
 */
export function reestimateBatchnormStats(graph: Graph, weights: WeightMap, train: Split, batch: number, batches: number): number {
  // the layers that carry moving statistics, by the op's movingStatistics face (not by op name)
  const bnNodes = graph.nodes.flatMap((n) => {
    const m = opOf(n).movingStatistics;
    return m ? [{ name: n.name, mean: m.mean, variance: m.variance }] : [];
  });
  if (!bnNodes.length || train.count === 0) return 0;
  const per = graph.inputShape.reduce((a, b) => a * b, 1);
  const params: ParamMap = new Map([...weights].map(([k, w]) => [k, tf.tensor(w.data, w.shape)]));
  const perBatch = new Map<string, { mean: Float32Array[]; variance: Float32Array[] }>();
  try {
    for (let b = 0; b < batches && b * batch < train.count; b++) {
      const n = Math.min(batch, train.count - b * batch);
      tf.tidy(() => {
        const xb = tf.tensor(train.x.subarray(b * batch * per, (b * batch + n) * per), [n, ...graph.inputShape]);
        const out = forward(graph, params, xb, { training: true });
        const unbias = n > 1 ? n / (n - 1) : 1;
        for (const [name, s] of out.batchStats) {
          const acc = perBatch.get(name) ?? { mean: [], variance: [] };
          acc.mean.push(Float32Array.from(s.mean.dataSync()));
          acc.variance.push(Float32Array.from(s.variance.dataSync(), (v) => v * unbias));
          perBatch.set(name, acc);
        }
      });
    }
  } finally {
    for (const t of params.values()) t.dispose();
  }
  let set = 0;
  for (const node of bnNodes) {
    const acc = perBatch.get(node.name);
    if (!acc) continue;
    weights.get(weightKey(node.name, node.mean))!.data.set(channelMedians(acc.mean));
    weights.get(weightKey(node.name, node.variance))!.data.set(channelMedians(acc.variance));
    set++;
  }
  return set;
}

/** Per channel, the median over batches. */
function channelMedians(batches: Float32Array[]): Float32Array {
  return Float32Array.from(batches[0], (_, c) => median(batches.map((b) => b[c])));
}
