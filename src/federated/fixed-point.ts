/**
 * Updates travel as integers mod 2^32 (fixed point with FRACTION_BITS fractional bits), so
 * pairwise masks can be uniform over the ring and cancel exactly (Bonawitz et al. 2017), and
 * so a CKKS sum can be rounded back to exact integers. A sum of signed values decodes
 * correctly while it stays within +-2^31 / 2^FRACTION_BITS = +-32768.
 */
export const FRACTION_BITS = 16;
const SCALE = 2 ** FRACTION_BITS;
const RING = 2 ** 32;

/** round(v * 2^16) mod 2^32. */
export function quantize(v: ArrayLike<number>): Uint32Array {
  const out = new Uint32Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = Math.round(v[i] * SCALE) >>> 0;
  return out;
}

/** The signed value of each ring element (centered lift), divided by 2^16. */
export function dequantize(r: Uint32Array): Float64Array {
  const out = new Float64Array(r.length);
  for (let i = 0; i < r.length; i++) out[i] = (r[i] | 0) / SCALE;
  return out;
}

/** a + b mod 2^32, into a. */
export function ringAddInto(a: Uint32Array, b: Uint32Array): void {
  for (let i = 0; i < a.length; i++) a[i] = (a[i] + b[i]) >>> 0;
}

/** a - b mod 2^32, into a. */
export function ringSubInto(a: Uint32Array, b: Uint32Array): void {
  for (let i = 0; i < a.length; i++) a[i] = (a[i] - b[i]) >>> 0;
}

/** Reduces exact non-negative integers (a CKKS sum of ring elements, rounded) mod 2^32. */
export function reduceRing(v: ArrayLike<number>): Uint32Array {
  const out = new Uint32Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const x = Math.round(v[i]);
    out[i] = (((x % RING) + RING) % RING) >>> 0;
  }
  return out;
}

const LIMB = 2 ** 24;

/**
 * Wide encoding for sums beyond +-32768 (data statistics such as sums of squares): each value
 * becomes a 64-bit fixed-point integer V = H * 2^24 + L with 0 <= L < 2^24, sent as two ring
 * elements [H..., L...]. The low limbs of up to 255 parties add up below 2^32, so no carry is
 * lost; the sum decodes exactly while it stays within +-2^55 / 2^16 (about 5e11).
 */
export function quantizeWide(v: ArrayLike<number>): Uint32Array {
  const n = v.length;
  const out = new Uint32Array(2 * n);
  for (let i = 0; i < n; i++) {
    const V = Math.round(v[i] * SCALE);
    const L = ((V % LIMB) + LIMB) % LIMB;
    const H = (V - L) / LIMB;
    out[i] = H >>> 0;
    out[n + i] = L;
  }
  return out;
}

export function dequantizeWide(r: Uint32Array): Float64Array {
  const n = r.length / 2;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = ((r[i] | 0) * LIMB + r[n + i]) / SCALE;
  return out;
}
