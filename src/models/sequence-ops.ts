import * as tf from '@tensorflow/tfjs-core';
import type { SequenceLayerSpec } from './graph.js';
import { powerSoftmaxTf } from '../layers/power-softmax.js';
import { layerNormTf } from '../layers/norm.js';

/**
 * tfjs forward of the sequence (transformer) ops of `graph.ts`, on batches [N, T, F].
 * Called by `tf-interpreter.ts`; `probe` (when ranges are recorded) receives the values whose
 * range the HE evaluator needs: the power-softmax denominator and the layer-norm variance.
 */
export function sequenceForward(
  L: SequenceLayerSpec,
  ins: tf.Tensor[],
  w: (param: string) => tf.Tensor,
  probe: ((what: string, t: tf.Tensor) => void) | null,
): tf.Tensor {
  const x = ins[0];
  switch (L.op) {
    case 'patchify': {
      const [n, h, wd, c] = x.shape;
      const s = L.size;
      // [N, H/s, s, W/s, s, C] -> [N, H/s, W/s, s, s, C] -> [N, T, s*s*C]
      const r = tf.reshape(x, [n, h / s, s, wd / s, s, c]);
      return tf.reshape(tf.transpose(r, [0, 1, 3, 2, 4, 5]), [n, (h / s) * (wd / s), s * s * c]);
    }
    case 'embedding': {
      const [n, t] = x.shape;
      // one-hot times the table: a matrix product, differentiable on every backend (and what
      // the HE evaluator computes on a one-hot encrypted input)
      const ids = tf.reshape(tf.cast(x, 'int32'), [n * t]) as tf.Tensor1D;
      const e = tf.matMul(tf.oneHot(ids, L.vocab), w('table') as tf.Tensor2D);
      return tf.reshape(e, [n, t, L.dim]);
    }
    case 'pos_embedding':
      return tf.add(x, w('table'));
    case 'token_dense':
      return tokenDense(x, w('kernel'), L.bias ? w('bias') : null);
    case 'attention':
      return attention(x, L, w, probe);
    case 'layernorm': {
      const { y, variance } = layerNormTf(x, w('gamma'), w('beta'), L.epsilon, L.poly);
      probe?.('variance', variance);
      return y;
    }
    case 'seq_pool': {
      if (L.mode === 'mean') return tf.mean(x, 1);
      const [n, t, d] = x.shape;
      return tf.reshape(tf.slice(x, [0, t - 1, 0], [n, 1, d]), [n, d]);
    }
  }
}

function tokenDense(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor | null): tf.Tensor {
  const [n, t, f] = x.shape;
  let y = tf.matMul(tf.reshape(x, [n * t, f]) as tf.Tensor2D, kernel as tf.Tensor2D);
  if (bias) y = tf.add(y, bias);
  return tf.reshape(y, [n, t, kernel.shape[1]!]);
}

function attention(
  x: tf.Tensor,
  L: Extract<SequenceLayerSpec, { op: 'attention' }>,
  w: (param: string) => tf.Tensor,
  probe: ((what: string, t: tf.Tensor) => void) | null,
): tf.Tensor {
  const [n, t, d] = x.shape;
  const h = L.heads;
  const dh = d / h;
  const qkv = tf.add(tf.matMul(tf.reshape(x, [n * t, d]) as tf.Tensor2D, w('qkv_kernel') as tf.Tensor2D), w('qkv_bias'));
  const [q, k, v] = tf.split(qkv, 3, 1).map((m) => tf.transpose(tf.reshape(m, [n, t, h, dh]), [0, 2, 1, 3]));
  // [N, H, T, T]; the 1/sqrt(dh) scale goes on q (fewer multiplications)
  const scores = tf.matMul(tf.mul(q, 1 / Math.sqrt(dh)), k, false, true);
  let weights: tf.Tensor;
  if (L.attention.kind === 'softmax') weights = tf.softmax(scores);
  else {
    const ps = powerSoftmaxTf(scores, L.attention.p, L.attention.eps);
    probe?.('denominator', ps.denominator);
    weights = ps.y;
  }
  const ctx = tf.reshape(tf.transpose(tf.matMul(weights, v), [0, 2, 1, 3]), [n * t, d]);
  const out = tf.add(tf.matMul(ctx as tf.Tensor2D, w('out_kernel') as tf.Tensor2D), w('out_bias'));
  return tf.reshape(out, [n, t, d]);
}

/** GELU, tanh form (Hendrycks & Gimpel): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
export function geluTf(x: tf.Tensor): tf.Tensor {
  const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
}

/**
 * Initial sequence-op weights (kernels and gammas are initialized by the interpreter like
 * dense layers and batchnorm): attention projections Glorot-uniform per [D, D] block,
 * token embeddings uniform with standard deviation 0.5, positions 0.1; biases and betas zero.
 */
export function sequenceInit(op: string, param: string, data: Float32Array, shape: number[], rng: { next(): number }): void {
  let limit = 0;
  if (param === 'qkv_kernel' || param === 'out_kernel') limit = Math.sqrt(6 / (2 * shape[0]));
  else if (param === 'table') limit = Math.sqrt(3) * (op === 'embedding' ? 0.5 : 0.1);
  if (limit === 0) return;
  for (let i = 0; i < data.length; i++) data[i] = (rng.next() * 2 - 1) * limit;
}
