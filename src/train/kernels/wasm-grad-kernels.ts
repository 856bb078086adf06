/**
 * Gradient kernels that @tensorflow/tfjs-backend-wasm (4.22) does not ship,
 * composed from the wasm backend's own (XNNPACK-backed) kernels.
 *
 * Missing on 'wasm' (checked against tf.getKernel): Conv2DBackpropFilter,
 * DepthwiseConv2dNativeBackpropFilter and DepthwiseConv2dNativeBackpropInput.
 * Without them tf.grad of conv2d w.r.t. its filter (and of depthwiseConv2d
 * w.r.t. anything) throws "Kernel ... not registered for backend 'wasm'".
 * Everything else a conv net with avg/max pooling, batch norm, ReLU /
 * polynomial activations, a dense head and adam/momentum needs is registered,
 * but two native kernels are replaced too:
 *  - MaxPoolGrad: the native one is WRONG for windows whose max is <= 0 (it
 *    seeds the running max with FLT_MIN, see maxPoolGradWasm), and slow;
 *  - Conv2DBackpropInput: correct but a scalar C++ loop, ~10x slower than
 *    the XNNPACK formulation below (option replaceConv2DBackpropInput).
 * AvgPoolGrad (native) is correct and kept.
 *
 * ---------------------------------------------------------------------------
 * Conv2DBackpropFilter
 * ---------------------------------------------------------------------------
 * Forward (NHWC, stride s, TF padding top/left = pt/pl):
 *   y[n,oh,ow,co] = sum_{kh,kw,ci} x[n, oh*s+kh-pt, ow*s+kw-pl, ci] * w[kh,kw,ci,co]
 * so
 *   dW[kh,kw,ci,co] = sum_{n,oh,ow} x[n, oh*s+kh-pt, ow*s+kw-pl, ci] * dy[n,oh,ow,co]
 *
 * Rename  X'[b=ci, h, w, c=n] = x[n,h,w,ci]     (x transposed [3,1,2,0])
 *         F'[i=oh, j=ow, c=n, co] = dy[n,oh,ow,co] (dy transposed [1,2,0,3])
 * and the sum becomes an ordinary NHWC convolution with stride 1 and
 * dilation s (the dy "filter" taps are s pixels apart in x):
 *   out[ci,kh,kw,co] = sum_{oh,ow,n} X'[ci, kh*1 + oh*s - pt, kw*1 + ow*s - pl, n]
 *                                  * F'[oh,ow,n,co]
 * i.e. batch = ci, input channels = n, output channels = co, output spatial
 * extent = KH x KW.  dW = transpose(out, [1,2,0,3]).
 *
 * Padding: the conv over X' must produce exactly KH rows. With top pad pt
 * and bottom pad pb' the output height is H + pt + pb' - (OH-1)*s, hence
 *   pb' = (OH-1)*s + KH - pt - H.
 * For TF 'same' this is the forward bottom pad (asymmetric: pb = pt or pt+1).
 * When H + pt + pb - KH is not a multiple of s ('valid' or 'same' with zero
 * total padding and H not matching the stride), the last
 * r = (H+pt+pb-KH) mod s rows of x are never read by the forward conv and
 * pb' is negative: those rows are cropped from X' (a Slice) instead of
 * padded.  Same for columns.  The pads are passed to the conv as EXPLICIT
 * pads (never as 'same', which XNNPACK would recompute for the wrong geometry).
 *
 * Why this way: the heavy part (N*OH*OW*KH*KW*Ci*Co MACs) runs in the wasm
 * Conv2D kernel, i.e. XNNPACK's SIMD IGEMM, not a JS loop; the extra work is
 * two transposes (size of x and of dy) plus one of dW, all in wasm.  The wasm
 * conv caches the packed XNNPACK operator keyed by the filter tensor id and
 * frees it in the filter's disposal callback, so disposing the temporary F'
 * also frees the operator (no leak across training steps).
 * NCHW input is handled by choosing the transposes ([1,2,3,0] / [2,3,0,1]).
 * (Swapping the roles - dy as the conv input, x as the filter - needs a
 * spatial flip and, for s > 1, a zero-upsampled dy, s^2 times the MACs.)
 *
 * Small Ci*KH*KW (<= 36: first layers with 1-4 input channels) uses im2col
 * instead: patches P = depthwiseConv2d(x, one-hot filter) [N*OH*OW, Ci*KH*KW]
 * (the conv applies stride/padding itself), then dW = P^T @ dy with XNNPACK's
 * GEMM (see filterGradIm2col); there the conv route would spend its time
 * moving/repacking dy for a GEMM with only Ci*KH*KW rows.
 *
 * ---------------------------------------------------------------------------
 * DepthwiseConv2dNativeBackpropFilter  (filter [KH,KW,C,M], any multiplier M)
 * ---------------------------------------------------------------------------
 *   dW[kh,kw,c,m] = sum_{n,oh,ow} x[n, oh*s+kh*d-pt, ow*s+kw*d-pl, c] * dy[n,oh,ow,c*M+m]
 * Here each channel has its own filter, so channels cannot become the batch
 * of a dense conv (that would compute all C x C cross terms).  Instead the
 * batch is folded into the channels of a *depthwise* conv:
 *   X'[0, h, w, n*C+c] = x[n,h,w,c]              (transpose [1,2,0,3], reshape)
 *   F'[oh, ow, n*C+c, m] = dy[n,oh,ow,c*M+m]     (transpose [1,2,0,3], reshape)
 *   out = depthwiseConv2d(X', F', stride d, dilation s, explicit pads as above)
 *       -> [1, KH, KW, N*C*M] -> reshape [KH,KW,N,C*M] -> sum over N
 *       -> reshape [KH,KW,C,M].
 * (XNNPACK runs this OH*OW-tap depthwise kernel at only ~0.3 GFLOP/s, but
 * that is ~50x the cpu backend, and faster than per-tap slice/mul/sum.)
 *
 * ---------------------------------------------------------------------------
 * DepthwiseConv2dNativeBackpropInput / Conv2DBackpropInput
 * ---------------------------------------------------------------------------
 *   dx[n,i,j,c] = sum_{kh,kw,m} dy[n,oh,ow,c*M+m] * w[kh,kw,c,m],  i = oh*s+kh*d-pt
 * = a stride-1 depthwise correlation of dy zero-upsampled by s (dyUp[oh*s] =
 * dy[oh], zeros between) with the spatially flipped filter (dilation d), top
 * pad (KH-1)*d - pt, and bottom pad chosen so that exactly H rows come out.
 * With M > 1 the filter is used as [KH,KW,C*M,1] (multiplier 1 over the C*M
 * dy channels) and the result [N,H,W,C*M] is summed over m.
 * Conv2DBackpropInput is the same with a dense Conv2D and the filter
 * flipped and channel-transposed (W'[kh,kw,co,ci] = w[KH-1-kh,KW-1-kw,ci,co]).
 * tfjs-backend-wasm does ship Conv2DBackpropInput, but as a scalar C++ loop
 * (~2 GFLOP/s, 10x slower than its forward conv on 14x14x32->64); it is
 * replaced by the XNNPACK route, keeping the native one as a fallback for
 * strided convs with 1-2 input channels (see preferNativeBackpropInput).
 *
 * All intermediates are backend-owned TensorInfos created by calling the wasm
 * backend's registered kernel functions directly (as the wasm backend's own
 * composite kernels do) and are released with backend.disposeData; the
 * kernels return a TensorInfo owned by the backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {
  KernelConfig,
  KernelFunc,
  NamedAttrMap,
  TensorInfo,
} from '@tensorflow/tfjs-core';

import { addr, simdFor, type WasmBackendInternals } from './fused-kernels.js';
import { winogradApplies, winogradFilterGrad, winogradInputGrad, winogradShape } from './winograd.js';
import { convFilterGrad, convInputGrad } from './kernel-parallel.js';
import { KernelScope } from './kernel-scope.js';

const BACKEND = 'wasm';

/** Minimal view of the wasm backend used here. */
interface WasmBackendLike {
  disposeData(dataId: object, force?: boolean): boolean;
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array;
}

type Pair = [number, number];
type Shape4 = [number, number, number, number];

/**
 * Crops or zero-pads an NHWC tensor so that a stride-`stride`, dilation
 * `dilation` conv with a `kernel`-tap filter and the given leading pads
 * produces exactly `want` outputs along H and W.  Returns the (possibly
 * cropped) input and the explicit NHWC pads for the conv.
 */
function fitPads(
  scope: KernelScope,
  x: TensorInfo,
  pads: { top: number; left: number },
  kernel: Pair,
  stride: Pair,
  dilation: Pair,
  want: Pair,
): { x: TensorInfo; pad: [Pair, Pair, Pair, Pair] } {
  const [n, h, w, c] = x.shape as Shape4;
  const extent = (k: number, s: number, d: number, out: number) => (out - 1) * s + (k - 1) * d + 1;
  // Rows needed, counted from the first padded row: pads.top + h + bottom.
  const bottom = extent(kernel[0], stride[0], dilation[0], want[0]) - pads.top - h;
  const right = extent(kernel[1], stride[1], dilation[1], want[1]) - pads.left - w;
  let top = pads.top;
  let left = pads.left;
  let cropTop = 0;
  let cropLeft = 0;
  if (top < 0) {
    cropTop = -top;
    top = 0;
  }
  if (left < 0) {
    cropLeft = -left;
    left = 0;
  }
  const cropBottom = Math.max(0, -bottom);
  const cropRight = Math.max(0, -right);
  let xx = x;
  if (cropTop || cropLeft || cropBottom || cropRight) {
    xx = scope.slice(
      x,
      [0, cropTop, cropLeft, 0],
      [n, h - cropTop - cropBottom, w - cropLeft - cropRight, c],
    );
  }
  return {
    x: xx,
    pad: [
      [0, 0],
      [top, Math.max(0, bottom)],
      [left, Math.max(0, right)],
      [0, 0],
    ],
  };
}

function asPair(v: number | number[] | undefined, dflt: number): Pair {
  if (v == null) return [dflt, dflt];
  if (typeof v === 'number') return [v, v];
  return [v[0], v.length > 1 ? v[1] : v[0]];
}

// ---------------------------------------------------------------------------
// Conv2DBackpropFilter
// ---------------------------------------------------------------------------

/**
 * Patch size Ci*KH*KW up to which Conv2DBackpropFilter uses im2col + matmul
 * instead of the transposed conv.  With few input channels (first layers:
 * 1-4 channels) the conv route spends its time moving dy around (transpose,
 * then XNNPACK repacks it as a huge filter) for a GEMM with only Ci*KH*KW
 * rows; there im2col is 1.5-4x faster (128x28x28x1->32 3x3: ~50 -> ~19 ms).
 * From ~8 channels on the conv route wins.
 */
const IM2COL_MAX_PATCH = 36;

/**
 * dW via im2col (NHWC only):
 *   P[n,oh,ow, ci*T + t] = x[n, oh*s+kh-pt, ow*s+kw-pl, ci]   (t = kh*KW+kw)
 * is a depthwise conv of x with a one-hot filter E[kh,kw,ci,t] = (t == kh*KW+kw)
 * (multiplier T = KH*KW; the conv handles stride, padding and the zero
 * border exactly, since every output is x*1 + sum of 0*x), then
 *   dW'[ci*T+t, co] = P^T[ci*T+t, p] @ dy[p, co]     (p = n,oh,ow)
 * with XNNPACK's fully-connected GEMM (wasm BatchMatMul without transposes;
 * P^T is materialized since the transposed-operand path is a scalar loop),
 * and dW = transpose(reshape(dW', [Ci,KH,KW,Co]), [1,2,0,3]).
 */
function filterGradIm2col(
  scope: KernelScope,
  backend: WasmBackendLike,
  x: TensorInfo,
  dy: TensorInfo,
  info: tf.backend_util.Conv2DInfo,
  a: tf.Conv2DBackpropFilterAttrs,
): TensorInfo {
  const { filterHeight: kh, filterWidth: kw, inChannels: ci, outChannels: co } = info;
  const taps = kh * kw;
  const eye = backend.makeOutput([kh, kw, ci, taps], 'float32');
  scope.adopt(eye);
  const e = backend.typedArrayFromHeap(eye);
  e.fill(0);
  for (let t = 0; t < taps; t++) {
    for (let c = 0; c < ci; c++) e[(t * ci + c) * taps + t] = 1;
  }
  const patches = scope.run(
    tf.DepthwiseConv2dNative,
    { x, filter: eye },
    {
      strides: a.strides,
      pad: a.pad,
      dilations: [1, 1],
      ...(a.dimRoundingMode != null ? { dimRoundingMode: a.dimRoundingMode } : {}),
    },
  ); // [N, OH, OW, Ci*T]
  const rows = info.batchSize * info.outHeight * info.outWidth;
  const pT = scope.transpose(scope.reshape(patches, [rows, ci * taps]), [1, 0]);
  const g = scope.run(
    tf.BatchMatMul,
    { a: scope.reshape(pT, [1, ci * taps, rows]), b: scope.reshape(dy, [1, rows, co]) },
    { transposeA: false, transposeB: false },
  ); // [1, Ci*T, Co]
  return scope.transpose(scope.reshape(g, [ci, kh, kw, co]), [1, 2, 0, 3]);
}

/**
 * dW by the SIMD kernel conv_filter_grad of simd-kernels.ts (NHWC, dilation 1, Co % 4 == 0):
 * no transposes, no im2col buffer, padding handled by index ranges. Null when the SIMD module
 * is unavailable.
 */
function filterGradDirect(backend: object, x: TensorInfo, dy: TensorInfo, info: tf.backend_util.Conv2DInfo): TensorInfo | null {
  const simd = simdFor(backend);
  if (!simd) return null;
  const b = backend as WasmBackendLike;
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow, outChannels: co } = info;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = info;
  const { top: pt, left: pl } = info.padInfo;
  const out = b.makeOutput([kh, kw, ci, co], 'float32');
  const ranges = b.makeOutput([2 * kw + 2], 'int32');
  try {
    writeColumnRanges(new Int32Array(simd.memory.buffer, addr(b, ranges), 2 * kw + 2), kw, sw, pl, w, ow);
    new Float32Array(simd.memory.buffer, addr(b, out), kh * kw * ci * co).fill(0);
    convFilterGrad(simd, [addr(b, x), addr(b, dy), addr(b, out), n, h, w, ci, oh, ow, co, kh, kw, sh, sw, pt, addr(b, ranges)]);
  } finally {
    b.disposeData(ranges.dataId);
  }
  return out;
}

export const conv2DBackpropFilterWasm: KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const a = attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  const dataFormat = tf.backend_util.convertConv2DDataFormat(a.dataFormat);
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as Shape4,
    a.filterShape as Shape4,
    a.strides,
    1,
    a.pad,
    a.dimRoundingMode,
    false,
    dataFormat,
  );
  const channelsLast = info.dataFormat === 'channelsLast';
  const expectDy = channelsLast
    ? [info.batchSize, info.outHeight, info.outWidth, info.outChannels]
    : [info.batchSize, info.outChannels, info.outHeight, info.outWidth];
  if (!tf.util.arraysEqual(dy.shape, expectDy)) {
    throw new Error(`Conv2DBackpropFilter(wasm): dy shape ${dy.shape} != expected ${expectDy}`);
  }
  const simd = simdFor(backend);
  if (simd && x.dtype === 'float32' && winogradApplies(info)) return winogradFilterGrad(simd, backend as WasmBackendInternals, x, dy, winogradShape(info));
  if (channelsLast && info.outChannels % 4 === 0 && info.dilationHeight === 1 && info.dilationWidth === 1) {
    const direct = filterGradDirect(backend, x, dy, info);
    if (direct) return direct;
  }
  const scope = new KernelScope(backend as WasmBackendLike);
  try {
    if (channelsLast && info.inChannels * info.filterHeight * info.filterWidth <= IM2COL_MAX_PATCH) {
      return scope.keep(filterGradIm2col(scope, backend as WasmBackendLike, x, dy, info, a));
    }
    // X' = [Ci, H, W, N], F' = [OH, OW, N, Co]
    const xT = scope.transpose(x, channelsLast ? [3, 1, 2, 0] : [1, 2, 3, 0]);
    const dyT = scope.transpose(dy, channelsLast ? [1, 2, 0, 3] : [2, 3, 0, 1]);
    const fit = fitPads(
      scope,
      xT,
      info.padInfo,
      [info.outHeight, info.outWidth],
      [1, 1],
      [info.strideHeight, info.strideWidth],
      [info.filterHeight, info.filterWidth],
    );
    const out = scope.run(
      tf.Conv2D,
      { x: fit.x, filter: dyT },
      {
        strides: [1, 1],
        dilations: [info.strideHeight, info.strideWidth],
        pad: fit.pad,
        dataFormat: 'NHWC',
      },
    );
    // out: [Ci, KH, KW, Co] -> [KH, KW, Ci, Co]
    return scope.keep(scope.transpose(out, [1, 2, 0, 3]));
  } finally {
    scope.dispose();
  }
};

// ---------------------------------------------------------------------------
// DepthwiseConv2dNativeBackpropFilter
// ---------------------------------------------------------------------------

export const depthwiseConv2dNativeBackpropFilterWasm: KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
  const a = attrs as unknown as tf.DepthwiseConv2dNativeBackpropFilterAttrs;
  const dil = asPair(a.dilations, 1);
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as Shape4,
    a.filterShape as Shape4,
    a.strides,
    dil,
    a.pad,
    a.dimRoundingMode,
    true,
  );
  const [n, h, w, c] = x.shape as Shape4;
  const kh = info.filterHeight;
  const kw = info.filterWidth;
  const m = info.outChannels / info.inChannels;
  const expectDy = [n, info.outHeight, info.outWidth, info.outChannels];
  if (!tf.util.arraysEqual(dy.shape, expectDy)) {
    throw new Error(`DepthwiseConv2dNativeBackpropFilter(wasm): dy shape ${dy.shape} != expected ${expectDy}`);
  }
  const scope = new KernelScope(backend as WasmBackendLike);
  try {
    // X' = [1, H, W, N*C]
    const xT = scope.reshape(scope.transpose(x, [1, 2, 0, 3]), [1, h, w, n * c]);
    // F' = [OH, OW, N*C, M]
    const dyT = scope.reshape(scope.transpose(dy, [1, 2, 0, 3]), [
      info.outHeight,
      info.outWidth,
      n * c,
      m,
    ]);
    const fit = fitPads(
      scope,
      xT,
      info.padInfo,
      [info.outHeight, info.outWidth],
      [info.dilationHeight, info.dilationWidth],
      [info.strideHeight, info.strideWidth],
      [kh, kw],
    );
    const out = scope.run(
      tf.DepthwiseConv2dNative,
      { x: fit.x, filter: dyT },
      {
        strides: [info.dilationHeight, info.dilationWidth],
        dilations: [info.strideHeight, info.strideWidth],
        pad: fit.pad,
      },
    ); // [1, KH, KW, N*C*M]
    let r: TensorInfo;
    if (n === 1) {
      r = out;
    } else {
      r = scope.run(tf.Sum, { x: scope.reshape(out, [kh, kw, n, c * m]) }, { axis: [2], keepDims: false });
    }
    return scope.keep(scope.reshape(r, [kh, kw, c, m]));
  } finally {
    scope.dispose();
  }
};

// ---------------------------------------------------------------------------
// Input gradients (transposed convolutions)
// ---------------------------------------------------------------------------

/**
 * Zero-upsamples NHWC `dy` by the stride ([N, OH*sh, OW*sw, C]; dy lands on
 * rows oh*sh / cols ow*sw) and prepares the explicit pads of the stride-1
 * correlation with the flipped filter that yields dx of height/width `h`/`w`.
 */
function upsampleForTransposedConv(
  scope: KernelScope,
  dy: TensorInfo,
  stride: Pair,
  kernel: Pair,
  dilation: Pair,
  padTop: number,
  padLeft: number,
  h: number,
  w: number,
): { x: TensorInfo; pad: [Pair, Pair, Pair, Pair] } {
  const [n, oh, ow, c] = dy.shape as Shape4;
  const [sh, sw] = stride;
  let up = dy;
  if (sh > 1 || sw > 1) {
    const r = scope.reshape(dy, [n, oh, 1, ow, 1, c]);
    const p = scope.run(
      tf.PadV2,
      { x: r },
      {
        paddings: [
          [0, 0],
          [0, 0],
          [0, sh - 1],
          [0, 0],
          [0, sw - 1],
          [0, 0],
        ],
        constantValue: 0,
      },
    );
    // The trailing sh-1 zero rows (sw-1 cols) are cropped or absorbed by fitPads.
    up = scope.reshape(p, [n, oh * sh, ow * sw, c]);
  }
  // dx row i reads up rows i + pt - (KH-1)*dh + kh'*dh (kh' = flipped tap),
  // i.e. top pad (KH-1)*dh - pt; fitPads sizes the bottom so that h rows result.
  return fitPads(
    scope,
    up,
    { top: (kernel[0] - 1) * dilation[0] - padTop, left: (kernel[1] - 1) * dilation[1] - padLeft },
    kernel,
    [1, 1],
    dilation,
    [h, w],
  );
}

/**
 * Conv2DBackpropInput as a stride-1 XNNPACK Conv2D:
 *   dx[n,i,j,ci] = sum_{kh,kw,co} dy[n,oh,ow,co] * w[kh,kw,ci,co],  i = oh*s+kh-pt
 *               = corr(upsample_s(dy), W')  with  W'[kh,kw,co,ci] = w[KH-1-kh,KW-1-kw,ci,co]
 * (filter flipped spatially and its channel axes swapped; explicit pads
 * (KH-1)-pt on top/left).  For stride s > 1 dy is zero-upsampled, which
 * wastes (1 - 1/s^2) of the MACs on zeros; see chooseBackpropInput().
 */
export const conv2DBackpropInputViaConv: KernelFunc = ({ inputs, backend, attrs }) => {
  const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
  const a = attrs as unknown as tf.Conv2DBackpropInputAttrs;
  const dataFormat = tf.backend_util.convertConv2DDataFormat(a.dataFormat);
  const info = tf.backend_util.computeConv2DInfo(
    a.inputShape as Shape4,
    filter.shape as Shape4,
    a.strides,
    1,
    a.pad,
    a.dimRoundingMode,
    false,
    dataFormat,
  );
  const channelsLast = info.dataFormat === 'channelsLast';
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outChannels: co } = info;
  const expectDy = channelsLast
    ? [n, info.outHeight, info.outWidth, co]
    : [n, co, info.outHeight, info.outWidth];
  if (!tf.util.arraysEqual(dy.shape, expectDy)) {
    throw new Error(`Conv2DBackpropInput(wasm): dy shape ${dy.shape} != expected ${expectDy}`);
  }
  const scope = new KernelScope(backend as WasmBackendLike);
  try {
    const dyNhwc = channelsLast ? dy : scope.transpose(dy, [0, 2, 3, 1]);
    const fit = upsampleForTransposedConv(
      scope,
      dyNhwc,
      [info.strideHeight, info.strideWidth],
      [info.filterHeight, info.filterWidth],
      [1, 1],
      info.padInfo.top,
      info.padInfo.left,
      h,
      w,
    );
    // W' = [KH, KW, Co, Ci], flipped.
    const wT = scope.transpose(filter, [0, 1, 3, 2]);
    const wFlip = ci === 1 && co === 1 ? wT : scope.run(tf.Reverse, { x: wT }, { dims: [0, 1] });
    const dx = scope.run(
      tf.Conv2D,
      { x: fit.x, filter: wFlip },
      { strides: [1, 1], dilations: [1, 1], pad: fit.pad, dataFormat: 'NHWC' },
    ); // [N, H, W, Ci]
    return scope.keep(channelsLast ? dx : scope.transpose(dx, [0, 3, 1, 2]));
  } finally {
    scope.dispose();
  }
};

export const depthwiseConv2dNativeBackpropInputWasm: KernelFunc = ({ inputs, backend, attrs }) => {
  const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
  const a = attrs as unknown as tf.DepthwiseConv2dNativeBackpropInputAttrs;
  const dil = asPair(a.dilations, 1);
  const info = tf.backend_util.computeConv2DInfo(
    a.inputShape as Shape4,
    filter.shape as Shape4,
    a.strides,
    dil,
    a.pad,
    a.dimRoundingMode,
    true,
  );
  const [n, h, w, c] = info.inShape;
  const kh = info.filterHeight;
  const kw = info.filterWidth;
  const m = info.outChannels / info.inChannels;
  const cm = c * m;
  const expectDy = [n, info.outHeight, info.outWidth, cm];
  if (!tf.util.arraysEqual(dy.shape, expectDy)) {
    throw new Error(`DepthwiseConv2dNativeBackpropInput(wasm): dy shape ${dy.shape} != expected ${expectDy}`);
  }
  const scope = new KernelScope(backend as WasmBackendLike);
  try {
    const fit = upsampleForTransposedConv(
      scope,
      dy,
      [info.strideHeight, info.strideWidth],
      [kh, kw],
      [info.dilationHeight, info.dilationWidth],
      info.padInfo.top,
      info.padInfo.left,
      h,
      w,
    );
    // Flipped filter, multiplier 1 over the C*M dy channels: [KH, KW, C*M, 1].
    const flipped = scope.reshape(scope.run(tf.Reverse, { x: filter }, { dims: [0, 1] }), [kh, kw, cm, 1]);
    const conv = scope.run(
      tf.DepthwiseConv2dNative,
      { x: fit.x, filter: flipped },
      { strides: [1, 1], dilations: [info.dilationHeight, info.dilationWidth], pad: fit.pad },
    ); // [N, H, W, C*M]
    if (m === 1) return scope.keep(conv);
    const s = scope.run(tf.Sum, { x: scope.reshape(conv, [n, h, w, c, m]) }, { axis: [4], keepDims: false });
    return scope.keep(s);
  } finally {
    scope.dispose();
  }
};

// ---------------------------------------------------------------------------
// MaxPoolGrad (replaces the native kernel, which is wrong for windows <= 0)
// ---------------------------------------------------------------------------

/**
 * MaxPoolGrad.  tfjs-backend-wasm's native kernel seeds its running max with
 * std::numeric_limits<float>::min() (the smallest *positive* float, not the
 * lowest), so for every window whose maximum is <= ~1e-38 (e.g. all-negative
 * pre-activations) it sends the gradient to element 0 of the tensor instead
 * of the window's argmax; it also breaks ties towards the last maximum.  It
 * is also slow (channel-outermost loops: ~165 ms for a 128x28x28x32 2x2
 * pool).  This replacement recomputes the argmax of each window with the
 * channel innermost (contiguous NHWC reads, one pass over x and dy, ~30-50 ms
 * on the same shape) and scatters dy there, directly in the wasm heap, with
 * tfjs-backend-cpu's semantics: first maximum wins, windows without a value
 * > -Infinity (all -Infinity/NaN) get no gradient.
 */
export const maxPoolGradWasm: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as WasmBackendLike;
  const { dy, input } = inputs as { dy: TensorInfo; input: TensorInfo; output: TensorInfo };
  const a = attrs as unknown as tf.MaxPoolGradAttrs;
  const info = tf.backend_util.computePool2DInfo(
    input.shape as Shape4,
    a.filterSize,
    a.strides,
    1,
    a.pad,
    a.dimRoundingMode,
  );
  const { batchSize, inHeight: h, inWidth: w, inChannels: c, outHeight: oh, outWidth: ow } = info;
  const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const { filterHeight: fh, filterWidth: fw } = info;
  const { top, left } = info.padInfo;
  if (!tf.util.arraysEqual(dy.shape, [batchSize, oh, ow, c])) {
    throw new Error(`MaxPoolGrad(wasm): dy shape ${dy.shape} != expected ${[batchSize, oh, ow, c]}`);
  }
  // Allocate first: a heap growth would detach views taken before it.
  const out = be.makeOutput(input.shape, 'float32');
  const dx = be.typedArrayFromHeap(out);
  const x = be.typedArrayFromHeap(input);
  const g = be.typedArrayFromHeap(dy);
  dx.fill(0);
  const best = new Float32Array(c);
  const pos = new Int32Array(c);
  for (let b = 0; b < batchSize; b++) {
    for (let yr = 0; yr < oh; yr++) {
      for (let yc = 0; yc < ow; yc++) {
        best.fill(Number.NEGATIVE_INFINITY);
        pos.fill(-1);
        for (let kr = 0; kr < fh; kr++) {
          const xr = yr * sh - top + kr * dh;
          if (xr < 0 || xr >= h) continue;
          for (let kc = 0; kc < fw; kc++) {
            const xc = yc * sw - left + kc * dw;
            if (xc < 0 || xc >= w) continue;
            const base = ((b * h + xr) * w + xc) * c;
            for (let ch = 0; ch < c; ch++) {
              const v = x[base + ch];
              if (v > best[ch]) {
                best[ch] = v;
                pos[ch] = base + ch;
              }
            }
          }
        }
        const gBase = ((b * oh + yr) * ow + yc) * c;
        for (let ch = 0; ch < c; ch++) {
          if (pos[ch] >= 0) dx[pos[ch]] += g[gBase + ch];
        }
      }
    }
  }
  return out;
};

// ---------------------------------------------------------------------------
// Registration
// ---------------------------------------------------------------------------

/** tfjs-backend-wasm's own Conv2DBackpropInput (a direct C++ loop), kept as fallback. */
let nativeConv2DBackpropInput: KernelFunc | undefined;

/**
 * The native wasm Conv2DBackpropInput is a scalar C++ loop (~2 GFLOP/s);
 * the XNNPACK route is ~10x faster at stride 1.  At stride s it does s^2
 * times the MACs (zero-upsampled dy), which still wins for s = 2 unless the
 * conv has 1-2 input channels (dx of a first layer: tiny, and XNNPACK's GEMM
 * is poorly used with 1-2 output channels), and stops paying at s*s >= 9.
 */
function preferNativeBackpropInput(attrs: NamedAttrMap | undefined, filter: TensorInfo): boolean {
  if (nativeConv2DBackpropInput == null) return false;
  const a = attrs as unknown as tf.Conv2DBackpropInputAttrs;
  const [sh, sw] = asPair(a.strides, 1);
  const inChannels = filter.shape[2];
  return (sh * sw > 1 && inChannels <= 2) || sh * sw >= 9;
}

/**
 * dx by the SIMD kernel conv_input_grad of simd-kernels.ts (NHWC, Ci % 4 == 0): a scatter of
 * W_tap dy per output position, so strided convs cost no zero-upsampling. Null when not
 * applicable or the SIMD module is unavailable.
 */
function inputGradDirect(args: Parameters<KernelFunc>[0]): TensorInfo | null {
  const { dy, filter } = args.inputs as { dy: TensorInfo; filter: TensorInfo };
  const a = args.attrs as unknown as tf.Conv2DBackpropInputAttrs;
  if (tf.backend_util.convertConv2DDataFormat(a.dataFormat) !== 'channelsLast') return null;
  const info = tf.backend_util.computeConv2DInfo(a.inputShape as Shape4, filter.shape as Shape4, a.strides, 1, a.pad, a.dimRoundingMode, false);
  const { batchSize: n, inHeight: h, inWidth: w, inChannels: ci, outHeight: oh, outWidth: ow, outChannels: co } = info;
  if (ci % 4 !== 0 || !tf.util.arraysEqual(dy.shape, [n, oh, ow, co])) return null;
  const simd = simdFor(args.backend);
  if (!simd) return null;
  if (dy.dtype === 'float32' && winogradApplies(info)) return winogradInputGrad(simd, args.backend as unknown as WasmBackendInternals, dy, filter, winogradShape(info));
  const b = args.backend as WasmBackendLike;
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw } = info;
  const { top: pt, left: pl } = info.padInfo;
  const scope = new KernelScope(b);
  try {
    const wT = scope.transpose(filter, [0, 1, 3, 2]); // [KH, KW, Co, Ci]
    const ranges = scope.adopt(b.makeOutput([2 * kw + 2], 'int32'));
    const r = new Int32Array(simd.memory.buffer, addr(b, ranges), 2 * kw + 2);
    writeColumnRanges(r, kw, sw, pl, w, ow);
    const out = b.makeOutput([n, h, w, ci], 'float32');
    new Float32Array(simd.memory.buffer, addr(b, out), n * h * w * ci).fill(0);
    convInputGrad(simd, [addr(b, dy), addr(b, wT), addr(b, out), n, h, w, ci, oh, ow, co, kh, kw, sh, sw, pt, addr(b, ranges)]);
    return out;
  } finally {
    scope.dispose();
  }
}

/** r[2k], r[2k+1]: output columns [lo, hi) whose input column ow*sw + k - pl is in [0, w); r[2 kw] = pl. */
export function writeColumnRanges(r: Int32Array, kw: number, sw: number, pl: number, w: number, ow: number): void {
  for (let k = 0; k < kw; k++) {
    const lo = Math.max(0, Math.ceil((pl - k) / sw));
    const hi = Math.min(ow, Math.floor((w - 1 + pl - k) / sw) + 1);
    r[2 * k] = lo;
    r[2 * k + 1] = Math.max(lo, hi);
  }
  r[2 * kw] = pl;
}

export const conv2DBackpropInputWasm: KernelFunc = (args) => {
  const filter = args.inputs.filter as TensorInfo;
  const direct = inputGradDirect(args);
  if (direct) return direct;
  if (preferNativeBackpropInput(args.attrs, filter)) return nativeConv2DBackpropInput!(args);
  return conv2DBackpropInputViaConv(args);
};

const MISSING: KernelConfig[] = [
  { kernelName: tf.Conv2DBackpropFilter, backendName: BACKEND, kernelFunc: conv2DBackpropFilterWasm },
  {
    kernelName: tf.DepthwiseConv2dNativeBackpropFilter,
    backendName: BACKEND,
    kernelFunc: depthwiseConv2dNativeBackpropFilterWasm,
  },
  {
    kernelName: tf.DepthwiseConv2dNativeBackpropInput,
    backendName: BACKEND,
    kernelFunc: depthwiseConv2dNativeBackpropInputWasm,
  },
];

/** Names of the kernels this module registers for the 'wasm' backend. */
export const WASM_GRADIENT_KERNEL_NAMES: readonly string[] = [
  ...MISSING.map((k) => k.kernelName),
  tf.Conv2DBackpropInput,
  tf.MaxPoolGrad,
];

export interface RegisterWasmGradientKernelsOptions {
  /**
   * Replace tfjs-backend-wasm's scalar-loop Conv2DBackpropInput with the
   * XNNPACK-based one (keeping the native one for the few shapes where it is
   * faster).  Default true.
   */
  replaceConv2DBackpropInput?: boolean;
}

/**
 * Installs `kernelFunc` for `name` on wasm in place of the native kernel,
 * once; returns the native kernel function (or undefined).  The native
 * kernel's setupFunc/disposeFunc are kept so that it still gets initialized
 * (it is used as a fallback) when the backend starts after this call.
 */
function replaceKernel(name: string, kernelFunc: KernelFunc, native: KernelFunc | undefined): KernelFunc | undefined {
  const existing = tf.getKernel(name, BACKEND);
  if (existing?.kernelFunc === kernelFunc) return native;
  // this module can be loaded twice in one process (a test file through tsx's require hook,
  // src/train/backend.ts through import()): another instance's replacement is not the
  // native kernel, and taking it for one would make the two call each other forever
  const natives = ((globalThis as Record<symbol, Map<string, KernelFunc | undefined>>)[NATIVE_KERNELS] ??= new Map());
  if (!(existing != null && (existing.kernelFunc as { [OURS]?: boolean })[OURS])) natives.set(name, existing?.kernelFunc);
  (kernelFunc as { [OURS]?: boolean })[OURS] = true;
  if (existing != null) tf.unregisterKernel(name, BACKEND);
  tf.registerKernel({
    kernelName: name,
    backendName: BACKEND,
    kernelFunc,
    setupFunc: existing?.setupFunc,
    disposeFunc: existing?.disposeFunc,
  });
  return natives.get(name);
}

/** Marks hepoly's replacement kernels, and keeps the native kernels they replaced, across module instances. */
const OURS = Symbol.for('hepoly.wasmGradKernel');
const NATIVE_KERNELS = Symbol.for('hepoly.nativeWasmKernels');

/**
 * Registers the missing gradient kernels for the 'wasm' backend, and replaces
 * the broken native MaxPoolGrad and (by default) the slow native
 * Conv2DBackpropInput.  Idempotent: a missing kernel that is already
 * registered for 'wasm' (by an earlier call, or natively by a future
 * tfjs-backend-wasm) is left alone, and replacements happen once.  May be
 * called before or after tf.setBackend('wasm'): the new kernels need no setup
 * and look the wasm kernels they compose up at call time.
 */
export function registerWasmGradientKernels(opts: RegisterWasmGradientKernelsOptions = {}): void {
  for (const k of MISSING) {
    if (tf.getKernel(k.kernelName, BACKEND) == null) tf.registerKernel(k);
  }
  replaceKernel(tf.MaxPoolGrad, maxPoolGradWasm, undefined);
  if (opts.replaceConv2DBackpropInput ?? true) {
    nativeConv2DBackpropInput = replaceKernel(tf.Conv2DBackpropInput, conv2DBackpropInputWasm, nativeConv2DBackpropInput);
  }
}
