/**
 * Float64 reference implementations of the layer ops on one sample (NHWC without batch), in
 * the conventions of models/graph.ts. The HE compiler uses them to push constants (biases,
 * polynomial offsets) through linear layers, and the reference interpreter uses them to
 * compute expected per-layer values.
 */

export interface Conv2dGeometry {
  inH: number;
  inW: number;
  cin: number;
  cout: number;
  kernel: number;
  stride: number;
  padding: 'same' | 'valid';
  outH: number;
  outW: number;
  padTop: number;
  padLeft: number;
  /**
   * Grouped convolution: output channels of group g read only input channels of group g (the
   * other kernel entries are zeros and are not visited). Stacked packing makes one group per
   * sample; 1 when absent.
   */
  groups?: number;
}

/** TF padding: pad_total = max((ceil(in/s)-1)*s + k - in, 0), pad_before = floor(pad_total/2). */
export function convGeometry(inShape: number[], kernel: number, stride: number, padding: 'same' | 'valid', cout: number, groups = 1): Conv2dGeometry {
  const [inH, inW, cin] = inShape;
  let outH: number;
  let outW: number;
  let padTop = 0;
  let padLeft = 0;
  if (padding === 'same') {
    outH = Math.ceil(inH / stride);
    outW = Math.ceil(inW / stride);
    padTop = Math.floor(Math.max((outH - 1) * stride + kernel - inH, 0) / 2);
    padLeft = Math.floor(Math.max((outW - 1) * stride + kernel - inW, 0) / 2);
  } else {
    outH = Math.floor((inH - kernel) / stride) + 1;
    outW = Math.floor((inW - kernel) / stride) + 1;
  }
  return { inH, inW, cin, cout, kernel, stride, padding, outH, outW, padTop, padLeft, ...(groups > 1 ? { groups } : {}) };
}

/**
 * A grouped kernel [k, k, cin/groups, cout] as the full HWIO kernel [k, k, cin, cout] the
 * geometry indexes (zeros outside the groups' diagonal blocks, which `forEachConvTap` skips).
 */
export function expandGroupedKernel(g: Conv2dGeometry, grouped: ArrayLike<number>): Float64Array {
  const groups = g.groups ?? 1;
  if (groups === 1) return Float64Array.from(grouped);
  const { cin, cout, kernel } = g;
  const cinG = cin / groups;
  const coutG = cout / groups;
  const full = new Float64Array(kernel * kernel * cin * cout);
  for (let p = 0; p < kernel * kernel; p++) {
    for (let ci = 0; ci < cin; ci++) {
      const grp = Math.floor(ci / cinG);
      for (let co = grp * coutG; co < (grp + 1) * coutG; co++) full[(p * cin + ci) * cout + co] = grouped[(p * cinG + (ci % cinG)) * cout + co];
    }
  }
  return full;
}

/**
 * The input pixel (iy * inW + ix) that kernel tap (ky, kx) of output pixel (oy, ox) reads,
 * or -1 when it falls in the zero padding: iy = oy * stride + ky - padTop, and the same for x.
 * The one place a convolution's index maths is written; every evaluator and reference reads
 * its taps through it (a tap offset past the kernel is a Winograd input tile's pixel).
 */
export function convInputPixel(g: Conv2dGeometry, oy: number, ox: number, ky: number, kx: number): number {
  const iy = oy * g.stride + ky - g.padTop;
  const ix = ox * g.stride + kx - g.padLeft;
  return iy < 0 || iy >= g.inH || ix < 0 || ix >= g.inW ? -1 : iy * g.inW + ix;
}

/**
 * Calls `fn(outIndex, inIndex, kernelIndex)` for every (output, input, weight) triple of a
 * convolution that stays inside the image; zero padding contributes nothing. Indices are
 * flat NHWC; the kernel index is flat HWIO.
 */
export function forEachConvTap(g: Conv2dGeometry, fn: (o: number, i: number, k: number) => void): void {
  const { cin, cout, kernel, outH, outW } = g;
  const groups = g.groups ?? 1;
  const cinG = cin / groups;
  const coutG = cout / groups;
  for (let oy = 0; oy < outH; oy++) {
    for (let ox = 0; ox < outW; ox++) {
      const oBase = (oy * outW + ox) * cout;
      for (let ky = 0; ky < kernel; ky++) {
        for (let kx = 0; kx < kernel; kx++) {
          const pixel = convInputPixel(g, oy, ox, ky, kx);
          if (pixel < 0) continue;
          const iBase = pixel * cin;
          const kBase = (ky * kernel + kx) * cin * cout;
          for (let grp = 0; grp < groups; grp++) {
            for (let ci = grp * cinG; ci < (grp + 1) * cinG; ci++) {
              for (let co = grp * coutG; co < (grp + 1) * coutG; co++) fn(oBase + co, iBase + ci, kBase + ci * cout + co);
            }
          }
        }
      }
    }
  }
}

export function conv2d(x: Float64Array, g: Conv2dGeometry, kernel: ArrayLike<number>, bias?: ArrayLike<number>): Float64Array {
  const out = new Float64Array(g.outH * g.outW * g.cout);
  if (bias) for (let i = 0; i < out.length; i++) out[i] = bias[i % g.cout];
  forEachConvTap(g, (o, i, k) => {
    out[o] += kernel[k] * x[i];
  });
  return out;
}

export function dense(x: Float64Array, kernel: ArrayLike<number>, units: number, bias?: ArrayLike<number>): Float64Array {
  const n = x.length;
  const out = new Float64Array(units);
  if (bias) for (let j = 0; j < units; j++) out[j] = bias[j];
  for (let i = 0; i < n; i++) {
    const xi = x[i];
    if (xi === 0) continue;
    const row = i * units;
    for (let j = 0; j < units; j++) out[j] += xi * kernel[row + j];
  }
  return out;
}

export function poolShape(inShape: number[], size: number, stride: number): number[] {
  return [Math.floor((inShape[0] - size) / stride) + 1, Math.floor((inShape[1] - size) / stride) + 1, inShape[2]];
}

/** Calls `fn(outIndex, inIndex)` for every element of every pooling window ('valid'). */
export function forEachPoolTap(inShape: number[], size: number, stride: number, fn: (o: number, i: number) => void): void {
  const [H, W, C] = inShape;
  const [oh, ow] = poolShape(inShape, size, stride);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      for (let dy = 0; dy < size; dy++) {
        for (let dx = 0; dx < size; dx++) {
          const iBase = ((y * stride + dy) * W + x * stride + dx) * C;
          const oBase = (y * ow + x) * C;
          for (let c = 0; c < C; c++) fn(oBase + c, iBase + c);
        }
      }
    }
  }
  void H;
}

/** Sum (not mean) over each window: HE pools add ciphertexts and fold 1/size^2 into a weight. */
export function sumpool(x: Float64Array, inShape: number[], size: number, stride: number): Float64Array {
  const [oh, ow, C] = poolShape(inShape, size, stride);
  const out = new Float64Array(oh * ow * C);
  forEachPoolTap(inShape, size, stride, (o, i) => {
    out[o] += x[i];
  });
  return out;
}

export function globalSum(x: Float64Array, inShape: number[]): Float64Array {
  const C = inShape[2];
  const out = new Float64Array(C);
  for (let i = 0; i < x.length; i++) out[i % C] += x[i];
  return out;
}

export function pad(x: Float64Array, inShape: number[], p: { top: number; bottom: number; left: number; right: number }): Float64Array {
  const [H, W, C] = inShape;
  const W2 = W + p.left + p.right;
  const out = new Float64Array((H + p.top + p.bottom) * W2 * C);
  for (let y = 0; y < H; y++) {
    for (let xx = 0; xx < W; xx++) {
      for (let c = 0; c < C; c++) out[((y + p.top) * W2 + xx + p.left) * C + c] = x[(y * W + xx) * C + c];
    }
  }
  return out;
}

/** Multiplies each channel (last axis) by its own factor. */
export function scaleChannels(x: Float64Array, s: ArrayLike<number>): Float64Array {
  const C = s.length;
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] * s[i % C];
  return out;
}

export function polynomial(x: Float64Array, coeffs: ArrayLike<number>): Float64Array {
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    let y = 0;
    for (let k = coeffs.length - 1; k >= 0; k--) y = y * x[i] + coeffs[k];
    out[i] = y;
  }
  return out;
}

export function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}
