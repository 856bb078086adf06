import * as tf from '@tensorflow/tfjs-core';
import type { Checkpoint } from '../../train/checkpoint.js';
import { heldOutSplit, toParams } from '../../train/evaluate.js';
import { forward } from '../../models/tf-interpreter.js';
import { SimBackend } from '../sim-backend.js';
import { compareLogits } from '../compare.js';
import { unpackBatch } from '../packing/batch.js';
import type { HeParams } from '../params.js';
import { encodeInputs, evaluateSequenceModel, type SequenceEvalReport } from './evaluator.js';

/**
 * Plaintext vs simulated-CKKS agreement of a transformer checkpoint on a chain as tall as the
 * network is deep (no security check, no refresh): the quickest check that the polynomial
 * schedule itself is sound, for tests and scripts/he-validate-transformer.ts. `hepoly
 * he-validate` (validate.ts) runs real, secure parameters instead.
 */

export interface TallLayerError {
  node: string;
  /** max |decrypted - plaintext| over the samples and the node's elements */
  maxAbsError: number;
  /** max |plaintext| of the node (scale of the error) */
  maxAbs: number;
  level: number;
}

export interface SequenceValidation {
  samples: number;
  /** fraction of samples whose encrypted argmax equals the plaintext argmax */
  agreement: number;
  /** accuracy of the encrypted predictions against the labels */
  encryptedAccuracy: number;
  plaintextAccuracy: number;
  maxLogitError: number;
  report: SequenceEvalReport;
  /** milliseconds per sample of each component (the batch's time / samples) */
  msPerSample: Record<string, number>;
  layers: TallLayerError[];
  params: HeParams;
}

export async function validateSequenceCheckpoint(
  ckpt: Checkpoint,
  opts: { samples: number; trace?: boolean; levels?: number; scaleBits?: number; seed?: number; ringDegree?: number },
): Promise<SequenceValidation> {
  const split = await heldOutSplit(ckpt);
  const n = Math.min(opts.samples, split.count);
  const graph = ckpt.graph;
  const per = graph.inputShape.reduce((a, b) => a * b, 1);
  const x = split.x.subarray(0, n * per);
  const scaleBits = opts.scaleBits ?? 40;
  const levels = opts.levels ?? 120;
  // the noise model scales with the ring degree: 4096 at least (slots are cheap in the simulation)
  const ringDegree = opts.ringDegree ?? Math.max(4096, 2 ** Math.ceil(Math.log2(2 * n)));
  const params: HeParams = { polyModulusDegree: ringDegree, coeffModulusBits: [60, ...new Array<number>(levels).fill(scaleBits), 60], scaleBits };
  const be = new SimBackend(params, { noise: true, seed: opts.seed ?? 1 });
  const enc = encodeInputs(graph, x, n);
  const cts = enc.values.map((v) => be.encryptInput(v));
  const { output, report, values } = evaluateSequenceModel(be, graph, ckpt.weights, ckpt.ranges, cts, { keepAll: !!opts.trace });

  const params64 = toParams(ckpt.weights);
  const C = graph.classes;
  try {
    const plainOf = (node: string): Float32Array => tf.tidy(() => forward({ ...graph, output: node }, params64, tf.tensor(x, [n, ...graph.inputShape]), { training: false }).logits.dataSync() as Float32Array);
    const plain = plainOf(graph.output);
    const cmp = compareLogits(plain, unpackBatch(output.map((c) => c.v), C, n), split.y, n, C);
    const layers: TallLayerError[] = [];
    if (opts.trace) {
      for (const node of graph.nodes) {
        const cts = values.get(node.name);
        if (!cts) continue;
        const ref = plainOf(node.name);
        const E = cts.length;
        let err = 0;
        let mx = 0;
        for (let s = 0; s < n; s++) {
          for (let i = 0; i < E; i++) {
            if (!cts[i]) continue; // a row the evaluator skipped (language model: only the last position is read)
            const r = ref[s * E + i];
            err = Math.max(err, Math.abs(cts[i].v[s] - r));
            mx = Math.max(mx, Math.abs(r));
          }
        }
        layers.push({ node: node.name, maxAbsError: err, maxAbs: mx, level: report.nodeLevels[node.name] });
      }
    }
    const msPerSample = Object.fromEntries(Object.entries(report.ms).map(([k, v]) => [k, v / n]));
    return { samples: n, agreement: cmp.agree / n, encryptedAccuracy: cmp.heCorrect / n, plaintextAccuracy: cmp.plainCorrect / n, maxLogitError: cmp.maxAbsError, report, msPerSample, layers, params };
  } finally {
    for (const t of params64.values()) t.dispose();
  }
}
