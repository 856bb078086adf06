/**
 * Reciprocal and inverse square root by Newton iterations, the way CKKS evaluates a division:
 * only additions and multiplications, started from a linear approximation fitted to the range
 * [lo, hi] the argument was observed in during training. Shared by the plaintext reference,
 * the tests and the HE lowering (src/ops/sequence-he.ts).
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
 * converging to +a^-1/2 for -2 < e0 < 1 (a positive start). The linear start minimizes the
 * error after the first step over [lo, hi] (see `fitInvSqrt`).
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

/** e = 1 - a y^2 after one Newton step for the inverse square root, from e. */
function invSqrtStep(e: number): number {
  return (e * e * (3 + e)) / 4;
}

/** Exact extremes of e0(a) = 1 - a (c0 - c1 a)^2 on [lo, hi] (a cubic: ends and critical points). */
function invSqrtStartRange(lo: number, hi: number, c0: number, c1: number): [number, number] {
  const pts = [lo, hi];
  if (c1 !== 0) for (const a of [c0 / c1, c0 / (3 * c1)]) if (a > lo && a < hi) pts.push(a);
  const es = pts.map((a) => 1 - a * (c0 - c1 * a) ** 2);
  return [Math.min(...es), Math.max(...es)];
}

/**
 * The error after one step, bounded over [lo, hi]: e' = e^2 (3 + e) / 4 is increasing in e
 * on [0, 1) and decreasing on (-2, 0], so its maximum over [emin, emax] is at an end. After
 * that every error is in [0, 1) and each further step maps the bound through the same
 * increasing function.
 */
function invSqrtBound(emin: number, emax: number, iterations: number): number {
  if (!(emin > -2 && emax < 1)) return Infinity;
  if (iterations === 0) return Math.max(Math.abs(emin), Math.abs(emax));
  let e = Math.max(invSqrtStep(emin), invSqrtStep(emax));
  for (let k = 1; k < iterations; k++) e = invSqrtStep(e);
  return e;
}

const invSqrtFits = new Map<string, NewtonApprox>();

/**
 * Linear start for a^-1/2 on [lo, hi] minimizing the error after the first Newton step (which,
 * the step being monotone from then on, minimizes the bound after any number of steps), by a
 * refined grid search over the start's values at lo and hi; and the proven bound after
 * `iterations` steps, from the exact range of the start error on [lo, hi].
 */
export function fitInvSqrt(lo: number, hi: number, iterations: number): NewtonApprox {
  checkRange(lo, hi, 'inverse square root');
  const key = `${lo}:${hi}:${iterations}`;
  const cached = invSqrtFits.get(key);
  if (cached) return cached;
  // the start y0 = c0 - c1 a through (lo, u) and (hi, v), 0 < u < 2/sqrt(lo), 0 < v < 2/sqrt(hi)
  const line = (u: number, v: number): [number, number] => {
    if (hi === lo) return [u, 0];
    const c1 = (u - v) / (hi - lo);
    return [u + c1 * lo, c1];
  };
  const score = (u: number, v: number) => {
    const [c0, c1] = line(u, v);
    const [emin, emax] = invSqrtStartRange(lo, hi, c0, c1);
    return invSqrtBound(emin, emax, 1);
  };
  let uLo = 0;
  let uHi = 2 / Math.sqrt(lo);
  let vLo = 0;
  let vHi = 2 / Math.sqrt(hi);
  let best = { u: 1 / Math.sqrt(lo), v: 1 / Math.sqrt(hi), s: Infinity };
  best.s = score(best.u, best.v);
  const n = 48;
  for (let round = 0; round < 6; round++) {
    for (let i = 1; i < n; i++) {
      for (let j = 1; j < n; j++) {
        const u = uLo + ((uHi - uLo) * i) / n;
        const v = vLo + ((vHi - vLo) * j) / n;
        const sc = score(u, v);
        if (sc < best.s) best = { u, v, s: sc };
      }
    }
    const du = (uHi - uLo) / 8;
    const dv = (vHi - vLo) / 8;
    uLo = Math.max(0, best.u - du);
    uHi = best.u + du;
    vLo = Math.max(0, best.v - dv);
    vHi = best.v + dv;
  }
  const [c0, c1] = line(best.u, best.v);
  const [emin, emax] = invSqrtStartRange(lo, hi, c0, c1);
  const fit = { lo, hi, c0, c1, iterations, startError: Math.max(Math.abs(emin), Math.abs(emax)), errorBound: invSqrtBound(emin, emax, iterations) };
  invSqrtFits.set(key, fit);
  return fit;
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
