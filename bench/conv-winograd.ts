/**
 * 3x3 stride-1 convolutions on the wasm backend: Winograd F(4x4, 3x3) and F(2x2, 3x3)
 * (src/train/kernels/winograd.ts) against hepoly's direct SIMD kernels (the anchor: what ran
 * before), interleaved in one run on the 3x3 stride-1 shapes of bench:train (batch 128):
 * forward, input gradient (dx) and filter gradient (dW).
 *
 *   npx tsx bench/conv-winograd.ts [--repeat 7]
 *   HEPOLY_WASM_THREADS=2 npx tsx bench/conv-winograd.ts     (both cores)
 *
 * Prints per shape and pass the median of --repeat calls of each (ms) and the ratio direct /
 * F(4x4), with the load average.
 */
import * as tf from '@tensorflow/tfjs-core';
import { loadavg } from 'node:os';
import { initBackend } from '../src/train/backend.js';
import { kernelThreads } from '../src/train/kernels/index.js';
import { setWinograd, type WinogradMode } from '../src/train/kernels/winograd.js';

// [N, H, Ci, Co]: square inputs, 3x3, stride 1, same padding
const SHAPES: [number, number, number, number][] = [
  [128, 14, 32, 64], // cnn conv2
  [128, 32, 16, 16], // resnet stage 1
  [128, 16, 32, 32], // resnet stage 2
  [128, 8, 64, 64], // resnet stage 3
];
const MODES: { name: string; mode: WinogradMode }[] = [
  { name: 'direct', mode: 0 },
  { name: 'F(2x2)', mode: 2 },
  { name: 'F(4x4)', mode: 4 },
];

type Pass = 'forward' | 'dx' | 'dW';

function passes(n: number, h: number, ci: number, co: number): Record<Pass, () => tf.Tensor> {
  const x = tf.randomNormal([n, h, h, ci]) as tf.Tensor4D;
  const f = tf.randomNormal([3, 3, ci, co]) as tf.Tensor4D;
  const dy = tf.randomNormal([n, h, h, co]) as tf.Tensor4D;
  return {
    forward: () => tf.conv2d(x, f, 1, 'same'),
    dx: () => tf.conv2dTranspose(dy, f, [n, h, h, ci], 1, 'same'),
    dW: () => tf.engine().runKernel(tf.Conv2DBackpropFilter, { x, dy }, { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, ci, co] }) as tf.Tensor,
  };
}

function timed(fn: () => tf.Tensor): number {
  const t = performance.now();
  const y = fn();
  const ms = performance.now() - t; // the wasm kernels run synchronously, in the call
  y.dispose();
  return ms;
}

const median = (v: number[]) => [...v].sort((a, b) => a - b)[v.length >> 1];

async function main(): Promise<void> {
  const i = process.argv.indexOf('--repeat');
  const repeat = i > 0 ? Math.max(1, Number(process.argv[i + 1])) : 7;
  await initBackend('wasm');
  console.log(`threads ${kernelThreads(tf.backend())}, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}, ${new Date().toISOString()}`);
  console.log(`| shape (batch 128) | pass | ${MODES.map((m) => `${m.name} ms`).join(' | ')} | direct / F(4x4) |`);
  console.log(`|---|---|${MODES.map(() => '---:').join('|')}|---:|`);
  for (const [n, h, ci, co] of SHAPES) {
    const run = passes(n, h, ci, co);
    for (const pass of ['forward', 'dx', 'dW'] as Pass[]) {
      const ms = MODES.map(() => [] as number[]);
      for (let r = 0; r < repeat + 1; r++)
        MODES.forEach((m, k) => {
          setWinograd(m.mode);
          const t = timed(run[pass]);
          if (r > 0) ms[k].push(t); // the first call of each compiles and allocates
        });
      const med = ms.map(median);
      console.log(`| ${h}x${h}x${ci} -> ${co} | ${pass} | ${med.map((t) => t.toFixed(1)).join(' | ')} | ${(med[0] / med[2]).toFixed(2)} |`);
    }
  }
  setWinograd(4);
  console.log(`load average at the end ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
}

await main();
