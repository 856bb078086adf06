/**
 * Reciprocal and inverse square root by Newton iterations, the way CKKS evaluates a division:
 * only additions and multiplications, started from a linear approximation fitted to the range
 * [lo, hi] the argument was observed in during training. Shared by the plaintext reference,
 * the tests and the HE evaluator (src/he/transformer/).
 *
 * Reciprocal. Start y0 = c0 - c1 a, iterate y <- y (2 - a y). With e = 1 - a y the error
 * squares exactly each step: e_{k+1} = e_k^2, so after k steps 1 - a y_k = (1 - a y0)^(2^k).
 * The linear start minimizing max |1 - a y0| over [lo, hi] equioscillates at lo, hi and the
 * vertex of the quadratic 1 - c0 a + c1 a^2, which gives
 *   c1 = 8 / ((lo + hi)^2 + 4 lo hi),  c0 = c1 (lo + hi),  E0 = max|e0| = 1 - c1 lo hi,
 * and the bound |1 - a y_k| <= E0^(2^k) for every a in [lo, hi] (relative error of y_k).
 * Outside the range the start error |e0| grows; the iteration converges to 1/a while
 * |e0| < 1, i.e. while 0 < a y0(a) < 2 (see `reciprocalStartError`).
 *
 * Inverse square root. Iterate y <- y (3 - a y^2) / 2. With e = 1 - a y^2:
 *   e_{k+1} = e_k^2 (3 + e_k) / 4,
 * converging for -3 < e0 < 1. The linear start is the secant of a^-1/2 through lo and hi,
 * scaled by the factor that minimizes max |e0| on [lo, hi] (golden-section search).
 *
 * Levels (multiplicative depth) under CKKS, counting one level per ciphertext product:
 * reciprocal: 1 (linear start, a plaintext product) + 2 per iteration (a*y, then y*(2 - a y));
 * inverse sqrt: 1 + 2 per iteration (y^2 and a*y in parallel, then (a y) y^2 and 1.5 y - 0.5 (.)
 * which needs the scalar 0.5 folded in), see `reciprocalDepth` / `invSqrtDepth`.
 */

export interface NewtonApprox {
  /** range the start was fitted to */
  lo: number;
  hi: number;
  /** linear start y0 = c0 - c1 * a */
  c0: number;
  c1: number;
  iterations: number;
  /** worst relative error |1 - a y0| (reciprocal) or |1 - a y0^2| (inverse sqrt) on [lo, hi] */
  startError: number;
  /** proven bound on the final error on [lo, hi] (same measure as startError) */
  errorBound: number;
}

function checkRange(lo: number, hi: number, what: string): void {
  if (!(Number.isFinite(lo) && Number.isFinite(hi) && lo > 0 && hi >= lo)) {
    throw new Error(`${what}: the range must satisfy 0 < lo <= hi, got [${lo}, ${hi}]`);
  }
}

/** Minimax linear start for 1/a on [lo, hi] and the error bound after `iterations` Newton steps. */
export function fitReciprocal(lo: number, hi: number, iterations: number): NewtonApprox {
  checkRange(lo, hi, 'reciprocal');
  const c1 = 8 / ((lo + hi) ** 2 + 4 * lo * hi);
  const c0 = c1 * (lo + hi);
  const startError = Math.max(0, 1 - c1 * lo * hi);
  return { lo, hi, c0, c1, iterations, startError, errorBound: startError ** 2 ** iterations };
}

/** The fewest Newton iterations whose bound on [lo, hi] is below `tol` (relative error). */
export function reciprocalIterationsFor(lo: number, hi: number, tol: number, max = 30): number {
  const e0 = fitReciprocal(lo, hi, 0).startError;
  for (let k = 0; k <= max; k++) if (e0 ** 2 ** k <= tol) return k;
  return max;
}

/** y_k for one number (plain float64, the reference the HE evaluator is checked against). */
export function reciprocalApprox(a: number, f: NewtonApprox): number {
  let y = f.c0 - f.c1 * a;
  for (let k = 0; k < f.iterations; k++) y = y * (2 - a * y);
  return y;
}

/** The start error |1 - a y0| at a: the iteration converges to 1/a iff it is below 1. */
export function reciprocalStartError(a: number, f: NewtonApprox): number {
  return Math.abs(1 - a * (f.c0 - f.c1 * a));
}

/** CKKS levels of the reciprocal: the start (one plaintext product) and two per iteration. */
export function reciprocalDepth(iterations: number): number {
  return 1 + 2 * iterations;
}

function invSqrtStartError(lo: number, hi: number, c0: number, c1: number): number {
  // |1 - a y0(a)^2| is smooth; sample densely on a log grid (plus the end points)
  let worst = 0;
  const n = 512;
  for (let i = 0; i <= n; i++) {
    const a = lo * (hi / lo) ** (i / n);
    const y = c0 - c1 * a;
    worst = Math.max(worst, Math.abs(1 - a * y * y));
  }
  return worst;
}

/** Linear start for a^-1/2 on [lo, hi] (scaled secant) and the error bound after `iterations`. */
export function fitInvSqrt(lo: number, hi: number, iterations: number): NewtonApprox {
  checkRange(lo, hi, 'inverse square root');
  const ylo = 1 / Math.sqrt(lo);
  const yhi = 1 / Math.sqrt(hi);
  const slope = hi > lo ? (ylo - yhi) / (hi - lo) : 0;
  const base0 = ylo + slope * lo;
  // scale s of the secant (c0, c1) = s (base0, slope): golden-section search on max|e0|
  const err = (s: number) => invSqrtStartError(lo, hi, s * base0, s * slope);
  let a = 0.3;
  let b = 1.5;
  const g = (Math.sqrt(5) - 1) / 2;
  for (let i = 0; i < 60; i++) {
    const m1 = b - g * (b - a);
    const m2 = a + g * (b - a);
    if (err(m1) < err(m2)) b = m2;
    else a = m1;
  }
  const s = (a + b) / 2;
  const c0 = s * base0;
  const c1 = s * slope;
  const startError = err(s);
  let e = startError;
  // the recursion e' = e^2 (3 + e) / 4 is increasing in |e| for e in (-1, 1): iterate the bound
  for (let k = 0; k < iterations; k++) e = (e * e * (3 + e)) / 4;
  return { lo, hi, c0, c1, iterations, startError, errorBound: e };
}

/** y_k ~ a^-1/2 for one number. */
export function invSqrtApprox(a: number, f: NewtonApprox): number {
  let y = f.c0 - f.c1 * a;
  for (let k = 0; k < f.iterations; k++) y = 0.5 * y * (3 - a * y * y);
  return y;
}

/** CKKS levels of the inverse square root: the start and two per iteration. */
export function invSqrtDepth(iterations: number): number {
  return 1 + 2 * iterations;
}
