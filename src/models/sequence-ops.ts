import type * as tf from '@tensorflow/tfjs-core';
import type { SequenceLayerSpec } from './graph.js';
import { getOp } from '../ops/registry.js';

/**
 * The tfjs forward of one sequence (transformer) op on batches [N, T, F], outside a graph
 * (tests, tools): the op registry's face (src/ops/sequence.ts) with the probe made optional.
 */
export function sequenceForward(
  L: SequenceLayerSpec,
  ins: tf.Tensor[],
  w: (param: string) => tf.Tensor,
  probe: ((what: string, t: tf.Tensor) => void) | null,
): tf.Tensor {
  return getOp(L.op).tfjsForward({ layer: L, node: L.op, ins, w, training: false, probe: probe ?? (() => {}), batchStats: () => {} });
}

export { geluTf } from '../ops/activation.js';
