/**
 * Child process of winograd.test.ts: on the wasm backend with the threads HEPOLY_WASM_THREADS
 * asks for, runs 3x3 stride-1 convolutions (forward, dx, dW through tf.grads) that go to
 * Winograd (HEPOLY_WINOGRAD: 4, 2, or 0 for the direct kernels), and prints one JSON line: per case the worst error of each against a
 * float64 direct sum (relative to the largest reference value) and a SHA-256 of the bits.
 */
import * as tf from '@tensorflow/tfjs-core';
import { createHash } from 'node:crypto';
import { initBackend } from '../../../src/train/backend.js';
import { kernelThreads } from '../../../src/train/kernels/index.js';
import { setWinograd, type WinogradMode } from '../../../src/train/kernels/winograd.js';
import { random } from '../../helpers/random.js';

interface Case {
  n: number;
  h: number;
  w: number;
  ci: number;
  co: number;
  /** [top, bottom, left, right] */
  pad: [number, number, number, number];
}

/** same, valid, uneven pads, odd sizes, > 1 block of tiles, > 1 dW chunk with a partial one */
export const CASES: Case[] = [
  { n: 20, h: 9, w: 7, ci: 8, co: 16, pad: [1, 1, 1, 1] },
  { n: 3, h: 8, w: 8, ci: 16, co: 8, pad: [0, 0, 0, 0] },
  { n: 2, h: 7, w: 6, ci: 12, co: 20, pad: [0, 2, 1, 0] },
  { n: 34, h: 5, w: 5, ci: 64, co: 32, pad: [1, 1, 1, 1] },
  { n: 1, h: 6, w: 9, ci: 8, co: 8, pad: [2, 2, 2, 2] }, // pads of 2 (dx pads by 0), one sample
  { n: 12, h: 10, w: 6, ci: 8, co: 12, pad: [1, 1, 1, 1] }, // one dW chunk, split over nothing
];


/** y, and the gradients of sum(y * r) (so dy = r) by direct float64 sums */
function reference(c: Case, x: Float32Array, g: Float32Array, r: Float32Array, oh: number, ow: number) {
  const { n, h, w, ci, co, pad } = c;
  const y = new Float64Array(n * oh * ow * co);
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(g.length);
  for (let b = 0; b < n; b++)
    for (let oy = 0; oy < oh; oy++)
      for (let ox = 0; ox < ow; ox++)
        for (let ky = 0; ky < 3; ky++)
          for (let kx = 0; kx < 3; kx++) {
            const iy = oy + ky - pad[0];
            const ix = ox + kx - pad[2];
            if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
            const xo = ((b * h + iy) * w + ix) * ci;
            const yo = ((b * oh + oy) * ow + ox) * co;
            const go = (ky * 3 + kx) * ci * co;
            for (let p = 0; p < ci; p++)
              for (let q = 0; q < co; q++) {
                y[yo + q] += x[xo + p] * g[go + p * co + q];
                dx[xo + p] += r[yo + q] * g[go + p * co + q];
                dw[go + p * co + q] += x[xo + p] * r[yo + q];
              }
          }
  return { y, dx, dw };
}

function worst(got: Float32Array, want: Float64Array): number {
  let err = 0;
  let mag = 0;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    mag = Math.max(mag, Math.abs(want[i]));
  }
  return err / mag;
}

function run(c: Case) {
  const oh = c.h + c.pad[0] + c.pad[1] - 2;
  const ow = c.w + c.pad[2] + c.pad[3] - 2;
  const x = random(c.n * c.h * c.w * c.ci, 7);
  const g = random(9 * c.ci * c.co, 13);
  const r = random(c.n * oh * ow * c.co, 17);
  const pads: [[number, number], [number, number], [number, number], [number, number]] = [[0, 0], [c.pad[0], c.pad[1]], [c.pad[2], c.pad[3]], [0, 0]];
  const [y, dx, dw] = tf.tidy(() => {
    const xt = tf.tensor4d(x, [c.n, c.h, c.w, c.ci]);
    const gt = tf.tensor4d(g, [3, 3, c.ci, c.co]);
    const rt = tf.tensor4d(r, [c.n, oh, ow, c.co]);
    const conv = (a: tf.Tensor, b: tf.Tensor) => tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, pads);
    const [gx, gw] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(conv(a, b), rt)))([xt, gt]);
    return [conv(xt, gt), gx, gw].map((t) => t.dataSync() as Float32Array);
  });
  const ref = reference(c, x, g, r, oh, ow);
  const bits = createHash('sha256');
  for (const t of [y, dx, dw]) bits.update(new Uint8Array(t.buffer, t.byteOffset, t.byteLength));
  return { y: worst(y, ref.y), dx: worst(dx, ref.dx), dw: worst(dw, ref.dw), bits: bits.digest('hex') };
}

await initBackend('wasm');
setWinograd(Number(process.env.HEPOLY_WINOGRAD ?? '4') as WinogradMode);
console.log(JSON.stringify({ threads: kernelThreads(tf.backend()), cases: CASES.map(run) }));
