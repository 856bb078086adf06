import * as tf from '@tensorflow/tfjs-core';

/**
 * tfjs-backend-wasm 4.22 multiplies transposed operands (`transposeA` / `transposeB`, which
 * every dense layer's backward pass uses) on a slow path: measured here 0.5-0.8 GFLOP/s
 * against ~10 GFLOP/s for the plain product, i.e. a dense MLP's training step spent >90% of
 * its time there. Transposing explicitly (a cheap memory pass in wasm) and then calling the
 * plain XNNPACK product is over 10x faster, so BatchMatMul is re-registered that way.
 */

let registered = false;

export function registerWasmMatMul(): void {
  if (registered) return;
  const original = tf.getKernel('BatchMatMul', 'wasm');
  const transpose = tf.getKernel('Transpose', 'wasm');
  if (!original || !transpose) return;
  registered = true;
  const swapLast = (rank: number) => [...Array.from({ length: rank - 2 }, (_, i) => i), rank - 1, rank - 2];
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel({
    kernelName: 'BatchMatMul',
    backendName: 'wasm',
    setupFunc: original.setupFunc,
    disposeFunc: original.disposeFunc,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
      const temps: tf.TensorInfo[] = [];
      const flip = (t: tf.TensorInfo): tf.TensorInfo => {
        const out = transpose.kernelFunc({ inputs: { x: t }, backend, attrs: { perm: swapLast(t.shape.length) } }) as tf.TensorInfo;
        temps.push(out);
        return out;
      };
      const aa = transposeA ? flip(a) : a;
      const bb = transposeB ? flip(b) : b;
      const result = original.kernelFunc({ inputs: { a: aa, b: bb }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } });
      for (const t of temps) (backend as unknown as { disposeData(id: object): void }).disposeData(t.dataId);
      return result;
    },
  });
}
