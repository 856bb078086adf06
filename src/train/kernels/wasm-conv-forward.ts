/**
 * Conv2D on the wasm backend by the SIMD kernel conv_fwd of simd-kernels.ts, split over the
 * samples of the batch across the kernel pool's threads (kernel-parallel.ts), in place of
 * tfjs-backend-wasm's XNNPACK convolution.
 *
 * Why: XNNPACK's pool spins (kernel-pool.ts), so the forward convolutions, ~1/3 of a conv
 * net's training step, could not use the second core. On one thread conv_fwd is on a par
 * with XNNPACK where a tap has many input channels and well behind it for the first layers
 * (1-3 input channels) and 1x1 convolutions (bench/conv-forward.ts, docs/results.md), so
 * only convolutions with Ci*KH*KW >= MIN_PATCH come here; so do only NHWC, dilation 1 and
 * output channels a multiple of 4. The rule does not depend on the thread count, so one
 * and several threads give the same bits.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import { addr, simdFor, type WasmBackendInternals } from './fused-kernels.js';
import { winogradApplies, winogradConv2D, winogradShape } from './winograd.js';
import { convForward } from './kernel-parallel.js';
import { writeColumnRanges } from './wasm-grad-kernels.js';

type Shape4 = [number, number, number, number];

interface WasmBackendLike {
  disposeData(dataId: object, force?: boolean): boolean;
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
}

let native: KernelFunc | undefined;

/** Smallest Ci * KH * KW taken by conv_fwd (3x3 with 8 input channels). */
const MIN_PATCH = 72;

const conv2DWasm: KernelFunc = (args) => {
  const { x, filter } = args.inputs as { x: TensorInfo; filter: TensorInfo };
  const a = args.attrs as unknown as tf.Conv2DAttrs;
  const dataFormat = tf.backend_util.convertConv2DDataFormat(a.dataFormat);
  const info = tf.backend_util.computeConv2DInfo(x.shape as Shape4, filter.shape as Shape4, a.strides, a.dilations, a.pad, a.dimRoundingMode, false, dataFormat);
  const simd = simdFor(args.backend);
  if (simd && x.dtype === 'float32' && winogradApplies(info)) return winogradConv2D(simd, args.backend as unknown as WasmBackendInternals, x, filter, winogradShape(info));
  const direct = simd && dataFormat === 'channelsLast' && info.dilationHeight === 1 && info.dilationWidth === 1 && info.outChannels % 4 === 0 && info.inChannels * info.filterHeight * info.filterWidth >= MIN_PATCH && x.dtype === 'float32';
  if (!direct) return native!(args);
  const b = args.backend as unknown as WasmBackendLike;
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow, outChannels: co } = info;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = info;
  const out = b.makeOutput([n, oh, ow, co], 'float32');
  const ranges = b.makeOutput([2 * kw + 2], 'int32');
  try {
    writeColumnRanges(new Int32Array(simd.memory.buffer, addr(b, ranges), 2 * kw + 2), kw, sw, info.padInfo.left, w, ow);
    new Float32Array(simd.memory.buffer, addr(b, out), n * oh * ow * co).fill(0);
    convForward(simd, [addr(b, x), addr(b, filter), addr(b, out), n, h, w, ci, oh, ow, co, kh, kw, sh, sw, info.padInfo.top, addr(b, ranges)]);
  } finally {
    b.disposeData(ranges.dataId);
  }
  return out;
};

/** Puts conv2DWasm in place of the native wasm Conv2D (kept as the fallback); idempotent. */
export function registerWasmConvForward(): void {
  const existing = tf.getKernel(tf.Conv2D, 'wasm');
  if (!existing || existing.kernelFunc === conv2DWasm) return;
  native = existing.kernelFunc;
  tf.unregisterKernel(tf.Conv2D, 'wasm');
  tf.registerKernel({ kernelName: tf.Conv2D, backendName: 'wasm', kernelFunc: conv2DWasm, setupFunc: existing.setupFunc, disposeFunc: existing.disposeFunc });
}
