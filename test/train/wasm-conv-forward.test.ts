import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { registerWasmConvForward } from '../../src/train/kernels/wasm-conv-forward.js';
import { registerWasmKernels } from '../../src/train/kernels/index.js';
import { expectAllClose } from '../helpers/close.js';

/**
 * Conv2D on wasm by hepoly's SIMD kernel (wasm-conv-forward.ts) against tfjs's cpu reference,
 * forward and through the gradient, on the geometries training uses (same / valid / explicit
 * pads, strides, 1x1 projections, odd sizes) and on ones it hands back to the native kernel
 * (few input channels per tap, dilation, output channels not a multiple of 4).
 */

type Pad = 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];

function values(shape: number[], seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

async function convOn(backend: string, x: Float32Array, xs: number[], f: Float32Array, fs: number[], strides: [number, number], pad: Pad, dilations: number): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const xt = tf.tensor4d(x, xs as [number, number, number, number]);
    const ft = tf.tensor4d(f, fs as [number, number, number, number]);
    const y = tf.conv2d(xt, ft, strides, pad, 'NHWC', dilations);
    // tfjs has no gradient for dilated convolutions
    if (dilations > 1) return [y.dataSync() as Float32Array];
    const loss = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.square(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, strides, pad, 'NHWC', dilations)));
    const [dx, df] = tf.grads(loss)([xt, ft]);
    return [y, dx, df].map((t) => t.dataSync() as Float32Array);
  });
}

describe('wasm Conv2D by the SIMD kernel', function () {
  this.timeout(60_000);
  let previous: string | null = null;
  before(async () => {
    previous = tf.engine().backendName;
    expect(await tf.setBackend('wasm')).to.equal(true);
    await tf.ready();
    // as training has them: the gradient kernels too
    registerWasmKernels();
  });
  after(async () => {
    if (previous) await tf.setBackend(previous);
  });

  it('is registered in place of the native kernel, once (idempotent)', () => {
    const k = tf.getKernel('Conv2D', 'wasm')!.kernelFunc;
    registerWasmConvForward();
    expect(tf.getKernel('Conv2D', 'wasm')!.kernelFunc).to.equal(k);
  });

  // [N, H, W, Ci, Co, K, strides, pad, dilation]
  const cases: Array<[number, number, number, number, number, number, [number, number], Pad, number]> = [
    [3, 9, 7, 8, 16, 3, [1, 1], 'same', 1],
    [2, 9, 9, 8, 20, 3, [2, 2], 'same', 1], // odd size, stride 2: asymmetric padding
    [2, 8, 8, 9, 8, 3, [2, 2], 'valid', 1], // last row/column never read; odd channel count
    [2, 7, 7, 72, 32, 1, [2, 2], 'valid', 1], // 1x1 strided projection
    [2, 7, 8, 8, 4, 3, [2, 1], [[0, 0], [1, 2], [2, 0], [0, 0]], 1],
    [1, 6, 6, 3, 12, 5, [1, 1], 2, 1],
    [2, 6, 6, 3, 8, 3, [1, 1], 'same', 1], // Ci*KH*KW < 72 (first layers): native kernel
    [2, 6, 6, 8, 6, 3, [1, 1], 'same', 1], // Co % 4 != 0: native kernel
    [2, 9, 9, 8, 8, 3, [1, 1], 'same', 2], // dilation: native kernel
  ];
  let seed = 1;
  for (const [n, h, w, ci, co, k, strides, pad, dil] of cases) {
    it(`x ${n}x${h}x${w}x${ci}, filter ${k}x${k}x${ci}x${co}, strides ${strides}, pad ${JSON.stringify(pad)}, dilation ${dil}: y, dx, dfilter match cpu`, async () => {
      const xs = [n, h, w, ci];
      const fs = [k, k, ci, co];
      const x = values(xs, seed++);
      const f = values(fs, seed++);
      const ours = await convOn('wasm', x, xs, f, fs, strides, pad, dil);
      const ref = await convOn('cpu', x, xs, f, fs, strides, pad, dil);
      expect(ours.length).to.equal(dil > 1 ? 1 : 3);
      ['y', 'dx', 'dfilter'].slice(0, ours.length).forEach((what, i) => expectAllClose(ours[i], ref[i], { atol: 2e-4, rtol: 1e-4 }, what));
    });
  }
});
