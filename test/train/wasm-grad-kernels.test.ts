import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core alone registers no gradient functions; the union package's node bundle does
// (as src/train/backend.ts relies on).
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import {
  registerWasmGradientKernels,
  WASM_GRADIENT_KERNEL_NAMES,
} from '../../src/train/kernels/wasm-grad-kernels.js';
import { expectAllClose } from '../helpers/close.js';

type BackendName = 'cpu' | 'wasm';
type Explicit = [[number, number], [number, number], [number, number], [number, number]];
type Pad = 'same' | 'valid' | number | Explicit;

interface Input {
  data: Float32Array;
  shape: number[];
}

/** Deterministic N(0,1)-ish data (sum of uniforms), independent of any backend. */
function randn(shape: number[], seed: number): Input {
  let s = (seed * 2654435761) >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = (next() + next() + next() + next() - 2) * 1.7320508;
  return { data, shape };
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** Float32 tolerance for sums of O(100..1000) products: relative to the tensor's scale. */
function expectClose(actual: Float32Array, expected: Float32Array, what: string): void {
  expectAllClose(actual, expected, { atol: 3e-5 * Math.max(1, maxAbs(expected)), rtol: 1e-4 }, what);
}

/**
 * On `backend`: builds tensors from `params` (differentiated) and `consts`, returns
 * [f(...), d f / d params...] as plain arrays; all tensors are disposed.
 */
async function valueAndGradsOn(
  backend: BackendName,
  params: Input[],
  consts: Input[],
  f: (params: tf.Tensor[], consts: tf.Tensor[]) => tf.Scalar,
): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  expect(tf.getBackend()).to.equal(backend);
  return tf.tidy(() => {
    const p = params.map((i) => tf.tensor(i.data, i.shape));
    const c = consts.map((i) => tf.tensor(i.data, i.shape));
    const { value, grads } = tf.valueAndGrads((...xs: tf.Tensor[]) => f(xs, c))(p);
    return [value, ...grads].map((t) => t.dataSync() as Float32Array).map((a) => Float32Array.from(a));
  });
}

/** Runs one kernel directly on `backend` and returns its output values and shape. */
async function runKernelOn(
  backend: BackendName,
  kernel: string,
  inputs: Record<string, Input>,
  attrs: Record<string, unknown>,
): Promise<{ data: Float32Array; shape: number[] }> {
  await tf.setBackend(backend);
  const ts: Record<string, tf.Tensor> = {};
  for (const [k, v] of Object.entries(inputs)) ts[k] = tf.tensor(v.data, v.shape);
  const out = tf.engine().runKernel(kernel, ts, attrs as tf.NamedAttrMap) as tf.Tensor;
  const res = { data: Float32Array.from(out.dataSync() as Float32Array), shape: out.shape };
  tf.dispose([out, ...Object.values(ts)]);
  return res;
}

async function compareGrads(
  params: Input[],
  consts: Input[],
  f: (params: tf.Tensor[], consts: tf.Tensor[]) => tf.Scalar,
  names: string[],
): Promise<void> {
  const ref = await valueAndGradsOn('cpu', params, consts, f);
  const got = await valueAndGradsOn('wasm', params, consts, f);
  expect(got.length).to.equal(ref.length);
  for (let i = 0; i < ref.length; i++) expectClose(got[i], ref[i], names[i]);
}

/** Output size along H (axis 1) or W (axis 2). */
function convOutSize(inSize: number, k: number, s: number, pad: Pad, axis: 1 | 2 = 1): number {
  if (pad === 'same') return Math.ceil(inSize / s);
  if (pad === 'valid') return Math.ceil((inSize - k + 1) / s);
  if (typeof pad === 'number') return Math.floor((inSize + 2 * pad - k) / s) + 1;
  return Math.floor((inSize + pad[axis][0] + pad[axis][1] - k) / s) + 1;
}

describe('wasm gradient kernels (Conv2DBackpropFilter & co.)', function () {
  this.timeout(60000);
  let previousBackend: string | null = null;
  let seed = 1;

  before(async () => {
    previousBackend = tf.engine().backendName;
    registerWasmGradientKernels();
    expect(await tf.setBackend('wasm')).to.equal(true);
    await tf.ready();
    expect(await tf.setBackend('cpu')).to.equal(true);
  });

  after(async () => {
    if (previousBackend != null) await tf.setBackend(previousBackend);
  });

  it('registers the missing kernels for wasm, idempotently', () => {
    for (const name of WASM_GRADIENT_KERNEL_NAMES) {
      expect(tf.getKernel(name, 'wasm'), name).to.not.equal(undefined);
    }
    const before = WASM_GRADIENT_KERNEL_NAMES.map((n) => tf.getKernel(n, 'wasm').kernelFunc);
    registerWasmGradientKernels();
    registerWasmGradientKernels();
    const after = WASM_GRADIENT_KERNEL_NAMES.map((n) => tf.getKernel(n, 'wasm').kernelFunc);
    expect(after).to.deep.equal(before);
    expect(WASM_GRADIENT_KERNEL_NAMES).to.include.members([
      'Conv2DBackpropFilter',
      'DepthwiseConv2dNativeBackpropFilter',
      'DepthwiseConv2dNativeBackpropInput',
      'Conv2DBackpropInput',
      'MaxPoolGrad',
    ]);
  });

  it('a second copy of the module (tsx loads one per loader) registering in turn does not take the first one\'s kernel for the native one', async () => {
    // a query string makes the loader evaluate the file again: another instance, as when a
    // test file is required through tsx's CJS hook and src/train/backend.ts imports it
    const second = (await import(`../../src/train/kernels/wasm-grad-kernels.ts?copy=${Date.now()}`)) as { registerWasmGradientKernels: () => void };
    second.registerWasmGradientKernels();
    registerWasmGradientKernels();
    second.registerWasmGradientKernels();
    await tf.setBackend('wasm');
    try {
      // stride 3: the native Conv2DBackpropInput is preferred, so each copy calls the kernel it replaced
      const x = tf.randomNormal([1, 9, 9, 2], 0, 1, 'float32', 7) as tf.Tensor4D;
      const f = tf.randomNormal([3, 3, 2, 2], 0, 1, 'float32', 8) as tf.Tensor4D;
      const g = tf.grad((xx) => tf.sum(tf.conv2d(xx as tf.Tensor4D, f, 3, 'valid')))(x);
      expect(g.shape).to.deep.equal([1, 9, 9, 2]);
      tf.dispose([x, f, g]);
    } finally {
      registerWasmGradientKernels();
      await tf.setBackend('cpu');
    }
  });

  describe('conv2d: d/dx and d/dfilter match the cpu backend', () => {
    // [N, H, W, Ci, Co, K, strides, pad]
    const cases: Array<[number, number, number, number, number, number, [number, number], Pad]> = [
      [2, 7, 7, 3, 4, 3, [2, 2], 'same'], // odd input, stride 2: asymmetric TF same padding
      [2, 7, 7, 3, 4, 3, [2, 2], 'valid'],
      [3, 8, 8, 2, 5, 3, [2, 2], 'same'], // native dx fallback (Ci <= 2, strided)
      [3, 8, 8, 2, 5, 3, [2, 2], 'valid'], // last row/col of x never read: cropped
      [2, 6, 5, 2, 3, 3, [1, 1], 'same'],
      [2, 6, 5, 4, 3, 3, [1, 1], 'valid'],
      [2, 9, 9, 1, 3, 2, [2, 2], 'same'], // even kernel
      [2, 8, 8, 3, 2, 2, [2, 2], 'same'], // even kernel, zero total padding
      [2, 10, 11, 2, 2, 4, [3, 3], 'same'],
      [2, 10, 11, 3, 2, 4, [3, 3], 'valid'],
      [1, 5, 5, 2, 3, 5, [1, 1], 'same'],
      [2, 7, 7, 3, 4, 1, [2, 2], 'valid'], // 1x1 strided
      [2, 7, 9, 3, 4, 3, [2, 1], 'same'], // different strides per axis
      [2, 7, 7, 3, 2, 3, [2, 2], 1], // numeric pad
      [4, 12, 12, 8, 16, 3, [1, 1], 'same'],
      [4, 13, 13, 8, 16, 3, [2, 2], 'same'],
      // >= 5 input channels: the transposed-conv route (fewer: im2col + matmul)
      [2, 8, 8, 6, 4, 3, [2, 2], 'valid'], // last row/col of x cropped
      [2, 8, 9, 6, 4, 3, [2, 2], 'same'],
      [2, 10, 11, 5, 3, 4, [3, 3], 'valid'],
      [2, 10, 11, 5, 3, 4, [3, 3], 'same'],
      [2, 8, 8, 6, 3, 2, [2, 2], 'same'], // even kernel, zero total padding
      [2, 7, 9, 6, 4, 3, [2, 1], 'same'],
      [2, 7, 7, 5, 2, 3, [2, 2], 1],
      [2, 7, 8, 2, 3, 3, [2, 2], [[0, 0], [1, 2], [2, 0], [0, 0]]], // explicit pads
      [2, 7, 8, 6, 3, 3, [2, 2], [[0, 0], [1, 2], [2, 0], [0, 0]]],
    ];
    for (const [n, h, w, ci, co, k, strides, pad] of cases) {
      it(`x ${n}x${h}x${w}x${ci}, filter ${k}x${k}x${ci}x${co}, strides ${strides}, pad ${JSON.stringify(pad)}`, async () => {
        const oh = convOutSize(h, k, strides[0], pad);
        const ow = convOutSize(w, k, strides[1], pad, 2);
        const x = randn([n, h, w, ci], seed++);
        const f = randn([k, k, ci, co], seed++);
        const r = randn([n, oh, ow, co], seed++); // random upstream gradient
        await compareGrads(
          [x, f],
          [r],
          ([xt, ft], [rt]) => tf.sum(tf.mul(tf.conv2d(xt as tf.Tensor4D, ft as tf.Tensor4D, strides, pad), rt)),
          ['loss', 'dx', 'dfilter'],
        );
      });
    }
  });

  describe('kernels called directly', () => {
    it('Conv2DBackpropFilter and Conv2DBackpropInput with NCHW data', async () => {
      const [n, h, w, ci, co, k] = [2, 7, 6, 3, 4, 3];
      for (const [strides, pad] of [
        [[2, 2], 'same'],
        [[1, 1], 'valid'],
      ] as Array<[[number, number], Pad]>) {
        const oh = convOutSize(h, k, strides[0], pad);
        const ow = convOutSize(w, k, strides[1], pad);
        const x = randn([n, ci, h, w], seed++);
        const dy = randn([n, co, oh, ow], seed++);
        const filter = randn([k, k, ci, co], seed++);
        const fAttrs = { strides, pad, dataFormat: 'NCHW', filterShape: [k, k, ci, co] };
        const refF = await runKernelOn('cpu', 'Conv2DBackpropFilter', { x, dy }, fAttrs);
        const gotF = await runKernelOn('wasm', 'Conv2DBackpropFilter', { x, dy }, fAttrs);
        expect(gotF.shape).to.deep.equal([k, k, ci, co]);
        expectClose(gotF.data, refF.data, `dW NCHW ${strides} ${pad}`);
        const iAttrs = { strides, pad, dataFormat: 'NCHW', inputShape: [n, ci, h, w] };
        const refI = await runKernelOn('cpu', 'Conv2DBackpropInput', { dy, filter }, iAttrs);
        const gotI = await runKernelOn('wasm', 'Conv2DBackpropInput', { dy, filter }, iAttrs);
        expect(gotI.shape).to.deep.equal([n, ci, h, w]);
        expectClose(gotI.data, refI.data, `dx NCHW ${strides} ${pad}`);
      }
    });

    it('depthwise backprop kernels with dilation 2 match a direct sum', async () => {
      // The cpu reference kernels ignore dilations, so compare with the definition.
      const [n, h, w, c, m, k, d] = [2, 9, 8, 3, 2, 3, 2];
      const pad = 'same';
      const x = randn([n, h, w, c], seed++);
      const filter = randn([k, k, c, m], seed++);
      const info = tf.backend_util.computeConv2DInfo([n, h, w, c], [k, k, c, m], 1, d, pad, undefined, true);
      const { outHeight: oh, outWidth: ow } = info;
      const { top, left } = info.padInfo;
      const dy = randn([n, oh, ow, c * m], seed++);
      const dW = new Float32Array(k * k * c * m);
      const dX = new Float32Array(n * h * w * c);
      for (let b = 0; b < n; b++)
        for (let yr = 0; yr < oh; yr++)
          for (let yc = 0; yc < ow; yc++)
            for (let kr = 0; kr < k; kr++)
              for (let kc = 0; kc < k; kc++) {
                const xr = yr + kr * d - top;
                const xc = yc + kc * d - left;
                if (xr < 0 || xr >= h || xc < 0 || xc >= w) continue;
                for (let ch = 0; ch < c; ch++)
                  for (let q = 0; q < m; q++) {
                    const g = dy.data[((b * oh + yr) * ow + yc) * c * m + ch * m + q];
                    const xi = ((b * h + xr) * w + xc) * c + ch;
                    const wi = ((kr * k + kc) * c + ch) * m + q;
                    dW[wi] += x.data[xi] * g;
                    dX[xi] += filter.data[wi] * g;
                  }
              }
      const attrs = { strides: [1, 1], pad, dilations: [d, d] };
      const gotW = await runKernelOn('wasm', 'DepthwiseConv2dNativeBackpropFilter', { x, dy }, {
        ...attrs,
        filterShape: [k, k, c, m],
      });
      expectClose(gotW.data, dW, 'depthwise dW, dilation 2');
      const gotX = await runKernelOn('wasm', 'DepthwiseConv2dNativeBackpropInput', { dy, filter }, {
        ...attrs,
        inputShape: [n, h, w, c],
      });
      expectClose(gotX.data, dX, 'depthwise dx, dilation 2');
    });

    it('MaxPoolGrad sends the gradient to each window argmax, also for all-negative windows', async () => {
      // tfjs-backend-wasm's native MaxPoolGrad gets windows with max <= 0 wrong.
      const configs: Array<[number, number, Pad]> = [
        [2, 2, 'valid'],
        [3, 2, 'same'],
        [3, 1, 'same'],
        [3, 2, 'valid'],
      ];
      for (const [k, s, pad] of configs) {
        for (const offset of [0, -6, 6]) {
          const [n, h, w, c] = [2, 9, 8, 3];
          const x = randn([n, h, w, c], seed++);
          for (let i = 0; i < x.data.length; i++) x.data[i] += offset;
          const oh = convOutSize(h, k, s, pad);
          const ow = convOutSize(w, k, s, pad);
          const dy = randn([n, oh, ow, c], seed++);
          const out = await runKernelOn('cpu', 'MaxPool', { x }, { filterSize: k, strides: s, pad });
          const attrs = { filterSize: k, strides: s, pad };
          const inputs = { dy, input: x, output: { data: out.data, shape: out.shape } };
          const ref = await runKernelOn('cpu', 'MaxPoolGrad', inputs, attrs);
          const got = await runKernelOn('wasm', 'MaxPoolGrad', inputs, attrs);
          expectClose(got.data, ref.data, `maxPool dx k${k} s${s} ${pad} offset ${offset}`);
        }
      }
      // Ties (first maximum wins, as on cpu) and non-finite values.
      const x = randn([1, 4, 4, 1], seed++);
      x.data[0] = -Infinity;
      x.data[5] = Infinity;
      x.data[2] = x.data[3] = x.data[6] = x.data[7] = 0.5;
      x.data[8] = x.data[9] = x.data[12] = x.data[13] = -Infinity;
      const dy = randn([1, 2, 2, 1], seed++);
      const attrs = { filterSize: 2, strides: 2, pad: 'valid' };
      const out = await runKernelOn('cpu', 'MaxPool', { x }, attrs);
      const inputs = { dy, input: x, output: { data: out.data, shape: out.shape } };
      const ref = await runKernelOn('cpu', 'MaxPoolGrad', inputs, attrs);
      const got = await runKernelOn('wasm', 'MaxPoolGrad', inputs, attrs);
      expectClose(got.data, ref.data, 'maxPool dx with ties and +-Infinity');
    });

    it('AvgPoolGrad (native wasm kernel) matches cpu, incl. same padding and overlapping windows', async () => {
      const configs: Array<[number, number, Pad]> = [
        [2, 2, 'valid'],
        [3, 2, 'same'],
        [3, 1, 'same'],
        [3, 2, 'valid'],
        [2, 2, 'same'],
      ];
      for (const [k, s, pad] of configs) {
        const [n, h, w, c] = [2, 9, 8, 3];
        const x = randn([n, h, w, c], seed++);
        const dy = randn([n, convOutSize(h, k, s, pad), convOutSize(w, k, s, pad), c], seed++);
        const attrs = { filterSize: k, strides: s, pad };
        const ref = await runKernelOn('cpu', 'AvgPoolGrad', { dy, input: x }, attrs);
        const got = await runKernelOn('wasm', 'AvgPoolGrad', { dy, input: x }, attrs);
        expectClose(got.data, ref.data, `avgPool dx k${k} s${s} ${pad}`);
      }
    });

    it('releases every intermediate (no tensor or wasm buffer leaks)', async () => {
      await tf.setBackend('wasm');
      const backend = tf.backend() as unknown as { numDataIds(): number };
      const mk = (shape: [number, number, number, number]) => tf.tensor4d(randn(shape, seed++).data, shape);
      const x = mk([3, 9, 9, 6]);
      const w = mk([3, 3, 6, 4]); // 6 input channels: transposed-conv route
      const w2 = mk([3, 3, 2, 4]); // 2 input channels: im2col route
      const dw = mk([3, 3, 6, 2]);
      const loss = (xt: tf.Tensor4D, wt: tf.Tensor4D, w2t: tf.Tensor4D, dwt: tf.Tensor4D) => {
        const a = tf.conv2d(xt, wt, 2, 'valid'); // [3,4,4,4]
        const b = tf.conv2d(tf.slice(xt, [0, 0, 0, 0], [-1, -1, -1, 2]), w2t, 2, 'valid');
        const c = tf.sum(tf.depthwiseConv2d(xt, dwt, 2, 'valid'), -1, true);
        return tf.sum(tf.square(tf.maxPool(tf.add(tf.add(a, b), c) as tf.Tensor4D, 2, 1, 'same')));
      };
      const g = tf.grads(loss as (...a: tf.Tensor[]) => tf.Tensor);
      tf.dispose(g([x, w, w2, dw])); // warm-up
      const tensors = tf.memory().numTensors;
      const ids = backend.numDataIds();
      for (let i = 0; i < 3; i++) tf.dispose(g([x, w, w2, dw]));
      expect(tf.memory().numTensors).to.equal(tensors);
      expect(backend.numDataIds()).to.equal(ids);
      tf.dispose([x, w, w2, dw]);
    });
  });

  describe('depthwiseConv2d: d/dx and d/dfilter match the cpu backend', () => {
    // [N, H, W, C, multiplier, K, stride, pad]
    const cases: Array<[number, number, number, number, number, number, number, Pad]> = [
      [2, 7, 7, 3, 1, 3, 2, 'same'],
      [2, 7, 7, 3, 1, 3, 2, 'valid'],
      [3, 8, 6, 4, 1, 3, 1, 'same'],
      [3, 8, 6, 4, 1, 3, 1, 'valid'],
      [2, 7, 7, 3, 2, 3, 2, 'same'],
      [2, 9, 8, 2, 3, 3, 1, 'valid'],
      [2, 8, 8, 5, 2, 2, 2, 'same'],
      [2, 10, 10, 3, 1, 4, 3, 'valid'],
      [4, 14, 14, 16, 1, 3, 1, 'same'],
    ];
    for (const [n, h, w, c, m, k, s, pad] of cases) {
      it(`x ${n}x${h}x${w}x${c}, filter ${k}x${k}x${c}x${m}, stride ${s}, pad ${pad}`, async () => {
        const oh = convOutSize(h, k, s, pad);
        const ow = convOutSize(w, k, s, pad);
        const x = randn([n, h, w, c], seed++);
        const f = randn([k, k, c, m], seed++);
        const r = randn([n, oh, ow, c * m], seed++);
        await compareGrads(
          [x, f],
          [r],
          ([xt, ft], [rt]) =>
            tf.sum(tf.mul(tf.depthwiseConv2d(xt as tf.Tensor4D, ft as tf.Tensor4D, s, pad as 'same' | 'valid'), rt)),
          ['loss', 'dx', 'dfilter'],
        );
      });
    }
  });

  describe('small conv nets train on wasm (gradients match cpu)', () => {
    it('conv2d -> avgPool -> mean', async () => {
      const x = randn([4, 10, 10, 2], seed++);
      const w = randn([3, 3, 2, 5], seed++);
      await compareGrads(
        [x, w],
        [],
        ([xt, wt]) =>
          tf.mean(tf.avgPool(tf.conv2d(xt as tf.Tensor4D, wt as tf.Tensor4D, 1, 'same'), 2, 2, 'valid')),
        ['loss', 'dx', 'dw'],
      );
    });

    it('conv2d -> maxPool -> mean', async () => {
      const x = randn([4, 9, 9, 3], seed++);
      const w = randn([3, 3, 3, 4], seed++);
      await compareGrads(
        [x, w],
        [],
        ([xt, wt]) =>
          tf.mean(tf.maxPool(tf.conv2d(xt as tf.Tensor4D, wt as tf.Tensor4D, 1, 'same'), 3, 2, 'same')),
        ['loss', 'dx', 'dw'],
      );
    });

    it('conv -> batchnorm -> square -> avgPool -> strided conv -> depthwise -> maxPool -> dense -> softmax CE', async () => {
      const [n, classes] = [6, 3];
      const x = randn([n, 12, 12, 1], seed++);
      const w1 = randn([3, 3, 1, 8], seed++);
      const gamma = randn([8], seed++);
      const beta = randn([8], seed++);
      const w2 = randn([3, 3, 8, 6], seed++);
      const dw = randn([3, 3, 6, 1], seed++);
      const wd = randn([2 * 2 * 6, classes], seed++);
      const labels: Input = { data: new Float32Array(n * classes), shape: [n, classes] };
      for (let i = 0; i < n; i++) labels.data[i * classes + (i % classes)] = 1;
      await compareGrads(
        [x, w1, gamma, beta, w2, dw, wd],
        [labels],
        ([xt, w1t, gt, bt, w2t, dwt, wdt], [yt]) => {
          let a = tf.conv2d(xt as tf.Tensor4D, w1t as tf.Tensor4D, 1, 'same'); // 12x12x8
          const { mean, variance } = tf.moments(a, [0, 1, 2]);
          a = tf.batchNorm(a, mean, variance, bt, gt, 1e-3) as tf.Tensor4D;
          a = tf.mul(tf.square(a), 0.1) as tf.Tensor4D;
          a = tf.avgPool(a, 2, 2, 'valid'); // 6x6x8
          a = tf.conv2d(a, w2t as tf.Tensor4D, 2, 'same'); // 3x3x6
          a = tf.depthwiseConv2d(a, dwt as tf.Tensor4D, 1, 'same'); // 3x3x6
          a = tf.maxPool(a, 2, 2, 'same'); // 2x2x6
          const logits = tf.matMul(tf.reshape(a, [n, 2 * 2 * 6]), wdt as tf.Tensor2D);
          return tf.losses.softmaxCrossEntropy(yt, logits) as tf.Scalar;
        },
        ['loss', 'dx', 'dw1', 'dgamma', 'dbeta', 'dw2', 'ddepthwise', 'ddense'],
      );
    });
  });
});
