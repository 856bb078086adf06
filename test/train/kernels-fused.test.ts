import { expect } from 'chai';
import * as tf from '@tensorflow/tfjs-core';
// the union package's node bundle registers tfjs-core's gradient functions
import '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { registerWasmGradientKernels } from '../../src/train/kernels/wasm-grad-kernels.js';
import { registerWasmMatMul } from '../../src/train/kernels/wasm-matmul.js';
import {
  BATCH_NORM,
  POLYNOMIAL,
  batchNormTrainFused,
  columnReduction,
  registerFusedKernels,
} from '../../src/train/kernels/fused-kernels.js';
import { polynomialTf } from '../../src/layers/polynomial.js';
import { batchNormTrain } from '../../src/layers/batchnorm.js';
import { expectAllClose } from '../helpers/close.js';

/**
 * The SIMD kernels of src/train/kernels (fused polynomial activation and batch norm, column
 * reductions, average-pool gradient, direct convolution kernels) against tfjs's reference
 * ops on the cpu backend, values and gradients, on random inputs.
 */

type BackendName = 'cpu' | 'wasm';

interface Input {
  data: Float32Array;
  shape: number[];
}

function randn(shape: number[], seed: number, scale = 1, shift = 0): Input {
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
  for (let i = 0; i < n; i++) data[i] = ((next() + next() + next() + next() - 2) * 1.7320508) * scale + shift;
  return { data, shape };
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function expectClose(actual: Float32Array, expected: Float32Array, what: string, rel = 3e-5): void {
  expectAllClose(actual, expected, { atol: rel * Math.max(1, maxAbs(expected)), rtol: 1e-4 }, what);
}

/** [f(...), d f / d params...] on `backend`, as plain arrays. */
async function valueAndGradsOn(
  backend: BackendName,
  params: Input[],
  consts: Input[],
  f: (params: tf.Tensor[], consts: tf.Tensor[]) => tf.Tensor,
): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const p = params.map((i) => tf.tensor(i.data, i.shape));
    const c = consts.map((i) => tf.tensor(i.data, i.shape));
    const out = f(p, c);
    const { grads } = tf.valueAndGrads((...xs: tf.Tensor[]) => tf.sum(tf.mul(f(xs, c), c[c.length - 1])) as tf.Scalar)(p);
    return [out, ...grads].map((t) => Float32Array.from(t.dataSync() as Float32Array));
  });
}

/** The op-by-op Horner formula that polynomialTf used before the fused kernel (autodiff'd). */
function polynomialReference(x: tf.Tensor, coeffs: tf.Tensor): tf.Tensor {
  const n = coeffs.shape[0];
  const c = tf.unstack(coeffs);
  let y: tf.Tensor = c[n - 1];
  for (let i = n - 2; i >= 0; i--) y = tf.add(tf.mul(y, x), c[i]);
  return y;
}

describe('fused / SIMD training kernels match the reference tfjs ops', function () {
  this.timeout(120000);
  let previous: string | null = null;
  let seed = 100;

  before(async () => {
    previous = tf.engine().backendName;
    expect(await tf.setBackend('wasm')).to.equal(true);
    await tf.ready();
    registerWasmGradientKernels();
    registerWasmMatMul();
    expect(registerFusedKernels('wasm')).to.equal(true);
    registerFusedKernels('cpu');
    expect(await tf.setBackend('cpu')).to.equal(true);
  });

  after(async () => {
    if (previous) await tf.setBackend(previous);
  });

  describe('polynomial activation (HepolyPolynomial + gradient)', () => {
    const cases: Array<[number[], number]> = [
      [[3], 2], // fewer than 4 elements: the JS tail only, no SIMD call
      [[7], 2], // one SIMD vector + a 3-element tail
      [[4099], 2], // SIMD body + 3-element tail, blocks of 1024
      [[3, 5, 7, 2], 2],
      [[64, 33], 1],
      [[1027], 3],
      [[2, 9, 9, 4], 4],
      [[513], 6],
    ];
    for (const [shape, degree] of cases) {
      it(`degree ${degree}, x ${shape.join('x')}: value, d/dx, d/dcoeffs (wasm SIMD and cpu JS vs op-by-op)`, async () => {
        const x = randn(shape, seed++);
        const c = randn([degree + 1], seed++, 0.5);
        const w = randn(shape, seed++);
        const ref = await valueAndGradsOn('cpu', [x, c], [w], ([xt, ct]) => polynomialReference(xt, ct));
        for (const backend of ['wasm', 'cpu'] as const) {
          await tf.setBackend(backend);
          expect(tf.getKernel(POLYNOMIAL, backend), backend).to.not.equal(undefined);
          const got = await valueAndGradsOn(backend, [x, c], [w], ([xt, ct]) => polynomialTf(xt, ct as tf.Tensor1D));
          // the forward pass is the same f32 Horner steps: equal to the last bit
          expectAllClose(got[0], ref[0], { atol: 0, rtol: 0 }, `${backend} y`);
          expectClose(got[1], ref[1], `${backend} dx`);
          expectClose(got[2], ref[2], `${backend} dcoeffs`, 1e-4);
        }
      });
    }

    it('falls back to the op-by-op formula where the kernel is not registered', async () => {
      await tf.setBackend('cpu');
      const kernel = tf.getKernel(POLYNOMIAL, 'cpu')!;
      tf.unregisterKernel(POLYNOMIAL, 'cpu');
      try {
        const y = tf.tidy(() => polynomialTf(tf.tensor1d([1, 2, 3]), tf.tensor1d([1, 0, 2])).dataSync());
        expect(Array.from(y)).to.deep.equal([3, 9, 19]);
      } finally {
        tf.registerKernel(kernel);
      }
    });
  });

  describe('batch normalization (HepolyBatchNorm + gradient) vs batchNormTrain', () => {
    for (const shape of [
      [8, 5, 5, 16],
      [6, 12],
      [3, 4, 4, 36],
    ]) {
      for (const withStats of [false, true]) {
        it(`x ${shape.join('x')}${withStats ? ', with mean and variance in the loss' : ''}`, async () => {
          const c = shape[shape.length - 1];
          const x = randn(shape, seed++, 2, 0.5);
          const g = randn([c], seed++);
          const b = randn([c], seed++);
          const w = randn(shape, seed++);
          const run = async (backend: BackendName, fused: boolean) => {
            await tf.setBackend(backend);
            return tf.tidy(() => {
              const [xt, gt, bt, wt] = [x, g, b, w].map((i) => tf.tensor(i.data, i.shape));
              const f = (xx: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) => {
                const o = fused ? batchNormTrainFused(xx, gg, bb, 1e-3)! : batchNormTrain(xx, gg, bb, 1e-3);
                return { o, loss: withStats ? tf.addN([tf.sum(tf.mul(o.y, wt)), tf.sum(tf.mul(o.mean, 0.7)), tf.sum(o.variance)]) : tf.sum(tf.mul(o.y, wt)) };
              };
              const { o } = f(xt, gt, bt);
              const grads = tf.grads((xx: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) => f(xx, gg, bb).loss as tf.Scalar)([xt, gt, bt]);
              return [o.y, o.mean, o.variance, ...grads].map((t) => Float32Array.from(t.dataSync() as Float32Array));
            });
          };
          await tf.setBackend('wasm');
          expect(tf.getKernel(BATCH_NORM, 'wasm')).to.not.equal(undefined);
          const ref = await run('cpu', false);
          const got = await run('wasm', true);
          ['y', 'mean', 'variance', 'dx', 'dgamma', 'dbeta'].forEach((name, i) => expectClose(got[i], ref[i], name, 1e-4));
        });
      }
    }

    it('does not apply (returns null) where channels are not a multiple of 4 or on cpu', async () => {
      await tf.setBackend('wasm');
      tf.tidy(() => {
        expect(batchNormTrainFused(tf.ones([2, 3]), tf.ones([3]), tf.zeros([3]), 1e-3)).to.equal(null);
      });
      await tf.setBackend('cpu');
      tf.tidy(() => {
        expect(batchNormTrainFused(tf.ones([2, 4]), tf.ones([4]), tf.zeros([4]), 1e-3)).to.equal(null);
      });
    });
  });

  describe('Sum / Mean over leading or middle axes (column sums)', () => {
    it('plans only contiguous runs of axes that exclude the last one', () => {
      expect(columnReduction([2, 3, 4, 8], [0, 1, 2])).to.deep.include({ outer: 1, rows: 24, cols: 8 });
      expect(columnReduction([2, 3, 4, 8], [1, 2])).to.deep.include({ outer: 2, rows: 12, cols: 8 });
      expect(columnReduction([2, 3, 4, 8], [-3])).to.deep.include({ outer: 2, rows: 3, cols: 32 });
      expect(columnReduction([2, 3, 4, 8], [0, 2])).to.equal(null);
      expect(columnReduction([2, 3, 4, 8], [3])).to.equal(null);
      expect(columnReduction([2, 3, 4, 6], [0, 1, 2])).to.equal(null);
    });

    const cases: Array<[number[], number | number[], boolean]> = [
      [[9, 5, 7, 16], [0, 1, 2], false],
      [[9, 5, 7, 16], [0, 1, 2], true],
      [[9, 5, 7, 16], [1, 2], false],
      [[9, 5, 7, 16], [1, 2], true],
      [[130, 12], 0, false],
      [[3, 70, 8], 1, true],
      [[5, 6, 4], [0, 2], false], // not a run: original kernel
      [[7, 6], [0], false], // cols % 4 != 0: original kernel
    ];
    for (const [shape, axis, keepDims] of cases) {
      it(`x ${shape.join('x')}, axis ${JSON.stringify(axis)}, keepDims ${keepDims}`, async () => {
        const x = randn(shape, seed++);
        const res = async (backend: BackendName) => {
          await tf.setBackend(backend);
          return tf.tidy(() => {
            const t = tf.tensor(x.data, x.shape);
            return [tf.sum(t, axis, keepDims), tf.mean(t, axis, keepDims)].map((r) => ({ shape: r.shape, data: Float32Array.from(r.dataSync() as Float32Array) }));
          });
        };
        const ref = await res('cpu');
        const got = await res('wasm');
        for (let i = 0; i < 2; i++) {
          expect(got[i].shape).to.deep.equal(ref[i].shape);
          expectClose(got[i].data, ref[i].data, i ? 'mean' : 'sum');
        }
      });
    }
  });

  describe('AvgPoolGrad for non-overlapping windows', () => {
    const cases: Array<[number[], number]> = [
      [[3, 8, 8, 4], 2],
      [[2, 7, 9, 8], 2], // last row/column not covered: zero gradient
      [[2, 9, 9, 12], 3],
      [[2, 6, 6, 3], 2], // C % 4 != 0: native kernel
    ];
    for (const [shape, k] of cases) {
      it(`x ${shape.join('x')}, ${k}x${k} stride ${k}`, async () => {
        const x = randn(shape, seed++);
        const oh = Math.floor(shape[1] / k);
        const ow = Math.floor(shape[2] / k);
        const w = randn([shape[0], oh, ow, shape[3]], seed++);
        const f = ([xt]: tf.Tensor[]) => tf.avgPool(xt as tf.Tensor4D, k, k, 'valid');
        const ref = await valueAndGradsOn('cpu', [x], [w], f);
        const got = await valueAndGradsOn('wasm', [x], [w], f);
        expectClose(got[0], ref[0], 'y');
        expectClose(got[1], ref[1], 'dx');
      });
    }
  });

  describe('direct SIMD convolution kernels: conv2d d/dx and d/dfilter vs cpu', () => {
    // [N, H, W, Ci, Co, K, strides, pad]: Co % 4 == 0 selects the direct filter gradient,
    // Ci % 4 == 0 the direct input gradient; 16-channel blocks plus 4-channel tails, odd Ci
    const cases: Array<[number, number, number, number, number, number, [number, number], 'same' | 'valid']> = [
      [2, 9, 9, 16, 20, 3, [1, 1], 'same'],
      [2, 9, 9, 16, 20, 3, [1, 1], 'valid'],
      [2, 9, 10, 8, 16, 3, [2, 2], 'same'],
      [2, 9, 10, 8, 16, 3, [2, 2], 'valid'],
      [3, 8, 8, 5, 12, 3, [1, 1], 'same'], // odd input channels (filter gradient pairs + single)
      [3, 8, 8, 5, 12, 3, [2, 2], 'valid'],
      [2, 8, 8, 12, 8, 1, [2, 2], 'same'], // 1x1 projection
      [2, 7, 7, 4, 36, 3, [2, 1], 'same'],
      [1, 6, 5, 32, 4, 2, [1, 1], 'same'], // even kernel
      [2, 10, 11, 4, 8, 4, [3, 3], 'same'],
    ];
    for (const [n, h, w, ci, co, k, strides, pad] of cases) {
      it(`x ${n}x${h}x${w}x${ci}, filter ${k}x${k}x${ci}x${co}, strides ${strides}, ${pad}`, async () => {
        const oh = pad === 'same' ? Math.ceil(h / strides[0]) : Math.ceil((h - k + 1) / strides[0]);
        const ow = pad === 'same' ? Math.ceil(w / strides[1]) : Math.ceil((w - k + 1) / strides[1]);
        const x = randn([n, h, w, ci], seed++);
        const f = randn([k, k, ci, co], seed++);
        const r = randn([n, oh, ow, co], seed++);
        const g = ([xt, ft]: tf.Tensor[]) => tf.conv2d(xt as tf.Tensor4D, ft as tf.Tensor4D, strides, pad);
        const ref = await valueAndGradsOn('cpu', [x, f], [r], g);
        const got = await valueAndGradsOn('wasm', [x, f], [r], g);
        expectClose(got[0], ref[0], 'y');
        expectClose(got[1], ref[1], 'dx');
        expectClose(got[2], ref[2], 'dfilter');
      });
    }
  });

  describe('Identity and same-dtype Cast share the buffer', () => {
    it('gives equal, independent tensors and leaks nothing', async () => {
      await tf.setBackend('wasm');
      const before = tf.memory().numTensors;
      const backend = tf.backend() as unknown as { numDataIds(): number };
      const ids = backend.numDataIds();
      const a = tf.tensor1d([1, 2, 3, 4.5]);
      const b = tf.clone(a);
      const c = tf.cast(a, 'float32');
      const d = tf.cast(a, 'int32');
      a.dispose();
      expect(Array.from(b.dataSync())).to.deep.equal([1, 2, 3, 4.5]);
      expect(Array.from(c.dataSync())).to.deep.equal([1, 2, 3, 4.5]);
      expect(Array.from(d.dataSync())).to.deep.equal([1, 2, 3, 4]);
      tf.dispose([b, c, d]);
      expect(tf.memory().numTensors).to.equal(before);
      expect(backend.numDataIds()).to.equal(ids);
    });

    it('a training step of a conv net leaves no tensors or wasm buffers behind', async () => {
      await tf.setBackend('wasm');
      const backend = tf.backend() as unknown as { numDataIds(): number };
      const vars = [tf.variable(tf.randomNormal([3, 3, 4, 8])), tf.variable(tf.tensor1d([0, 1, 0.1])), tf.variable(tf.ones([8])), tf.variable(tf.zeros([8]))];
      const opt: tf.Optimizer = tf.train.adam(1e-3);
      const x = tf.randomNormal([4, 6, 6, 4]);
      const step = () =>
        tf.tidy(() => {
          const { value, grads } = tf.variableGrads(() => {
            const h = tf.conv2d(x as tf.Tensor4D, vars[0] as tf.Tensor4D, 1, 'same');
            const bn = batchNormTrainFused(h, vars[2], vars[3], 1e-3)!;
            const y = polynomialTf(bn.y, vars[1] as tf.Tensor1D);
            return tf.mean(tf.square(tf.avgPool(y as tf.Tensor4D, 2, 2, 'valid'))) as tf.Scalar;
          });
          opt.applyGradients(grads);
          return value.dataSync()[0];
        });
      step();
      const tensors = tf.memory().numTensors;
      const ids = backend.numDataIds();
      for (let i = 0; i < 3; i++) expect(Number.isFinite(step())).to.equal(true);
      expect(tf.memory().numTensors).to.equal(tensors);
      expect(backend.numDataIds()).to.equal(ids);
      tf.dispose([...vars, x]);
      opt.dispose();
    });
  });
});
