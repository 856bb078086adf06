/**
 * Micro-benchmark of the wasm gradient kernels registered by
 * src/train/kernels/wasm-grad-kernels.ts, on the shapes of a small 28x28 CNN.
 *
 *   npx tsx bench/conv-grad-kernels.ts [--cpu]
 *
 * Prints ms per call and GFLOP/s (2 * MACs / time; for MaxPoolGrad "MACs" is
 * the input size).  For the kernels it replaces (Conv2DBackpropInput,
 * MaxPoolGrad) it also times tfjs-backend-wasm's native kernel.  With --cpu
 * also times the tfjs-backend-cpu reference kernels (plain JS loops; slow,
 * ~2 minutes for conv2's filter gradient) once each.
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { registerWasmGradientKernels } from '../src/train/kernels/wasm-grad-kernels.js';

/** The native tfjs-backend-wasm kernels that registerWasmGradientKernels() replaces, re-registered under these names. */
const NATIVE_ALIAS: Record<string, string> = {
  [tf.Conv2DBackpropInput]: 'NativeWasmConv2DBackpropInput',
  [tf.MaxPoolGrad]: 'NativeWasmMaxPoolGrad',
};

interface Case {
  name: string;
  kernel: string;
  /** Builds inputs + attrs on the current backend. */
  make: () => { inputs: Record<string, tf.Tensor>; attrs: Record<string, unknown> };
  macs: number;
}

function convCases(): Case[] {
  const out: Case[] = [];
  const layers: Array<[string, number, number, number, number, number, number, 'same' | 'valid']> = [
    // name, N, H, W, Ci, Co, K, pad   (stride 1)
    ['conv1 128x28x28x1->32 3x3 same', 128, 28, 28, 1, 32, 3, 'same'],
    ['conv2 128x14x14x32->64 3x3 same', 128, 14, 14, 32, 64, 3, 'same'],
  ];
  for (const [name, n, h, w, ci, co, k, pad] of layers) {
    const macs = n * h * w * k * k * ci * co;
    out.push({
      name: `Conv2D (fwd, reference)   ${name}`,
      kernel: tf.Conv2D,
      macs,
      make: () => ({
        inputs: { x: tf.randomNormal([n, h, w, ci]), filter: tf.randomNormal([k, k, ci, co]) },
        attrs: { strides: [1, 1], pad, dataFormat: 'NHWC', dilations: [1, 1] },
      }),
    });
    out.push({
      name: `Conv2DBackpropFilter      ${name}`,
      kernel: tf.Conv2DBackpropFilter,
      macs,
      make: () => ({
        inputs: { x: tf.randomNormal([n, h, w, ci]), dy: tf.randomNormal([n, h, w, co]) },
        attrs: { strides: [1, 1], pad, dataFormat: 'NHWC', filterShape: [k, k, ci, co] },
      }),
    });
    out.push({
      name: `Conv2DBackpropInput       ${name}`,
      kernel: tf.Conv2DBackpropInput,
      macs,
      make: () => ({
        inputs: { dy: tf.randomNormal([n, h, w, co]), filter: tf.randomNormal([k, k, ci, co]) },
        attrs: { strides: [1, 1], pad, dataFormat: 'NHWC', inputShape: [n, h, w, ci] },
      }),
    });
  }
  // Strided conv (a stride-2 layer instead of pooling).
  {
    const [n, h, ci, co, k] = [128, 28, 32, 64, 3];
    const oh = 14;
    const macs = n * oh * oh * k * k * ci * co;
    out.push({
      name: 'Conv2DBackpropFilter      conv 128x28x28x32->64 3x3 s2 same',
      kernel: tf.Conv2DBackpropFilter,
      macs,
      make: () => ({
        inputs: { x: tf.randomNormal([n, h, h, ci]), dy: tf.randomNormal([n, oh, oh, co]) },
        attrs: { strides: [2, 2], pad: 'same', dataFormat: 'NHWC', filterShape: [k, k, ci, co] },
      }),
    });
    out.push({
      name: 'Conv2DBackpropInput       conv 128x28x28x32->64 3x3 s2 same',
      kernel: tf.Conv2DBackpropInput,
      macs,
      make: () => ({
        inputs: { dy: tf.randomNormal([n, oh, oh, co]), filter: tf.randomNormal([k, k, ci, co]) },
        attrs: { strides: [2, 2], pad: 'same', dataFormat: 'NHWC', inputShape: [n, h, h, ci] },
      }),
    });
  }
  // Max pooling 2x2 of the conv1 activations.
  {
    const [n, h, c] = [128, 28, 32];
    out.push({
      name: 'MaxPoolGrad               128x28x28x32 2x2 s2',
      kernel: tf.MaxPoolGrad,
      macs: n * h * h * c,
      make: () => {
        const x = tf.randomNormal([n, h, h, c]);
        return {
          inputs: { dy: tf.randomNormal([n, h / 2, h / 2, c]), input: x, output: tf.maxPool(x as tf.Tensor4D, 2, 2, 'valid') },
          attrs: { filterSize: [2, 2], strides: [2, 2], pad: 'valid' },
        };
      },
    });
  }
  // Depthwise 3x3 on the conv2 activations.
  const [n, h, w, c, k] = [128, 14, 14, 32, 3];
  const dwMacs = n * h * w * k * k * c;
  out.push({
    name: 'DepthwiseConv2dNativeBackpropFilter 128x14x14x32 3x3 same',
    kernel: tf.DepthwiseConv2dNativeBackpropFilter,
    macs: dwMacs,
    make: () => ({
      inputs: { x: tf.randomNormal([n, h, w, c]), dy: tf.randomNormal([n, h, w, c]) },
      attrs: { strides: [1, 1], pad: 'same', dilations: [1, 1], filterShape: [k, k, c, 1] },
    }),
  });
  out.push({
    name: 'DepthwiseConv2dNativeBackpropInput  128x14x14x32 3x3 same',
    kernel: tf.DepthwiseConv2dNativeBackpropInput,
    macs: dwMacs,
    make: () => ({
      inputs: { dy: tf.randomNormal([n, h, w, c]), filter: tf.randomNormal([k, k, c, 1]) },
      attrs: { strides: [1, 1], pad: 'same', dilations: [1, 1], inputShape: [n, h, w, c] },
    }),
  });
  return out;
}

function timeCase(c: Case, reps: number): number {
  const { inputs, attrs } = c.make();
  const once = () => {
    const r = tf.engine().runKernel(c.kernel, inputs, attrs as tf.NamedAttrMap) as tf.Tensor;
    r.dataSync();
    r.dispose();
  };
  once(); // warm-up (XNNPACK operator creation, allocation)
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) once();
  const ms = (performance.now() - t0) / reps;
  for (const t of Object.values(inputs)) t.dispose();
  return ms;
}

async function main(): Promise<void> {
  const withCpu = process.argv.includes('--cpu');
  for (const [name, alias] of Object.entries(NATIVE_ALIAS)) {
    const native = tf.getKernel(name, 'wasm');
    if (native != null) tf.registerKernel({ ...native, kernelName: alias });
  }
  registerWasmGradientKernels();
  await tf.setBackend('wasm');
  const fmt = (ms: number, macs: number) =>
    `${ms.toFixed(1).padStart(8)} ms ${((2 * macs) / (ms * 1e6)).toFixed(2).padStart(7)} GFLOP/s`;
  console.log(`backend wasm (${tf.env().getBool('WASM_HAS_SIMD_SUPPORT') ? 'simd' : 'no simd'})`);
  for (const c of convCases()) {
    await tf.setBackend('wasm');
    const ms = timeCase(c, 5);
    let line = `${c.name.padEnd(62)} wasm ${fmt(ms, c.macs)}`;
    const alias = NATIVE_ALIAS[c.kernel];
    if (alias != null && tf.getKernel(alias, 'wasm') != null) {
      line += `   native wasm ${fmt(timeCase({ ...c, kernel: alias }, 5), c.macs)}`;
    }
    if (withCpu && c.kernel !== tf.Conv2D) {
      await tf.setBackend('cpu');
      line += `   cpu ${fmt(timeCase(c, 1), c.macs)}`;
    }
    console.log(line);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
