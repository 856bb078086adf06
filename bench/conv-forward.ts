/**
 * Conv2D forward on the wasm backend: tfjs-backend-wasm's XNNPACK kernel against hepoly's SIMD
 * kernel (src/train/kernels/wasm-conv-forward.ts, one thread), interleaved in one run on the
 * convolution shapes of bench:train (batch 128), through tf.conv2d both times.
 *
 *   npx tsx bench/conv-forward.ts [--repeat 7]
 *
 * Prints per shape the fastest of --repeat calls of each (ms), the ratio and the largest
 * difference between the two outputs, with the load average.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { loadavg } from 'node:os';
import { registerWasmConvForward } from '../src/train/kernels/wasm-conv-forward.js';

// [N, H, W, Ci, Co, K, stride]
const SHAPES: [number, number, number, number, number, number, number][] = [
  [128, 28, 28, 1, 32, 3, 1], // cnn conv1
  [128, 14, 14, 32, 64, 3, 1], // cnn conv2
  [128, 32, 32, 3, 16, 3, 1], // resnet stem
  [128, 32, 32, 16, 16, 3, 1], // resnet stage 1
  [128, 32, 32, 16, 32, 3, 2], // resnet stage 2 entry
  [128, 16, 16, 32, 32, 3, 1], // resnet stage 2
  [128, 8, 8, 64, 64, 3, 1], // resnet stage 3
  [128, 32, 32, 16, 32, 1, 2], // 1x1 projection
];

async function main(): Promise<void> {
  const i = process.argv.indexOf('--repeat');
  const repeat = i > 0 ? Math.max(1, Number(process.argv[i + 1])) : 7;
  await tf.setBackend('wasm');
  await tf.ready();
  const native = tf.getKernel(tf.Conv2D, 'wasm')!;
  registerWasmConvForward();
  const ours = tf.getKernel(tf.Conv2D, 'wasm')!;
  const use = (k: tf.KernelConfig) => {
    tf.unregisterKernel(tf.Conv2D, 'wasm');
    tf.registerKernel(k);
  };
  console.log(`load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}, ${new Date().toISOString()}`);
  console.log('| shape | XNNPACK ms | hepoly conv_fwd ms | ratio (XNNPACK / ours) | max abs diff |');
  console.log('|---|---:|---:|---:|---:|');
  for (const [n, h, w, ci, co, k, s] of SHAPES) {
    const x = tf.randomNormal([n, h, w, ci]) as tf.Tensor4D;
    const f = tf.randomNormal([k, k, ci, co]) as tf.Tensor4D;
    const time = (kernel: tf.KernelConfig) => {
      use(kernel);
      const t = performance.now();
      const y = tf.conv2d(x, f, s, 'same');
      y.dataSync();
      return { ms: performance.now() - t, y };
    };
    const a: number[] = [];
    const b: number[] = [];
    let diff = 0;
    for (let r = 0; r < repeat; r++) {
      const p = time(native);
      const q = time(ours);
      a.push(p.ms);
      b.push(q.ms);
      diff = Math.max(diff, tf.tidy(() => tf.max(tf.abs(tf.sub(p.y, q.y))).dataSync()[0]));
      p.y.dispose();
      q.y.dispose();
    }
    const best = (v: number[]) => Math.min(...v);
    console.log(`| ${n}x${h}x${w}x${ci} -> ${co}, ${k}x${k}/${s} | ${best(a).toFixed(1)} | ${best(b).toFixed(1)} | ${(best(a) / best(b)).toFixed(2)} | ${diff.toExponential(1)} |`);
    x.dispose();
    f.dispose();
  }
  console.log(`load average at the end ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
