import { HepolyError } from '../util/errors.js';

/**
 * Privacy accountant: Renyi differential privacy of the sampled Gaussian mechanism (Mironov,
 * Talwar, Zhang 2019, "Renyi Differential Privacy of the Sampled Gaussian Mechanism"; the
 * moments accountant of Abadi et al. 2016 in RDP form), as TensorFlow Privacy's rdp_accountant
 * computes it. One step releases sum(clipped records sampled with probability q) + N(0, (sigma*C)^2);
 * T steps compose additively in RDP; the (epsilon, delta) conversion is Mironov 2017, Prop. 3:
 * epsilon = min over orders a of RDP(a) + log(1/delta) / (a - 1).
 */

/** TensorFlow Privacy's default orders: 1.1 .. 10.9 in steps of 0.1, then 12 .. 63. */
export const DEFAULT_ORDERS: number[] = [
  ...Array.from({ length: 99 }, (_, k) => 1 + (k + 1) / 10),
  ...Array.from({ length: 52 }, (_, k) => 12 + k),
];

const logAdd = (a: number, b: number): number => {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  const m = Math.max(a, b);
  return m + Math.log1p(Math.exp(-Math.abs(a - b)));
};

/** log(exp(a) - exp(b)) for a >= b. */
const logSub = (a: number, b: number): number => {
  if (b === -Infinity) return a;
  if (a <= b) return -Infinity;
  return a + Math.log(-Math.expm1(b - a));
};

/**
 * log(erfc(x)) without underflow: the Chebyshev fit of Numerical Recipes (erfcc, fractional
 * error < 1.2e-7 everywhere) taken in log form, so large x do not round to log(0).
 */
export function logErfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const poly =
    -z * z -
    1.26551223 +
    t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  const logPos = Math.log(t) + poly;
  return x >= 0 ? logPos : Math.log(2 - Math.exp(logPos));
}

/** log A_alpha for integer alpha (Mironov et al. 2019, Section 3.3): a finite binomial sum. */
function logAInt(q: number, sigma: number, alpha: number): number {
  let logA = -Infinity;
  let logBinom = 0;
  for (let i = 0; i <= alpha; i++) {
    if (i > 0) logBinom += Math.log((alpha - i + 1) / i);
    const s = logBinom + i * Math.log(q) + (alpha - i) * Math.log(1 - q) + (i * i - i) / (2 * sigma * sigma);
    logA = logAdd(logA, s);
  }
  return logA;
}

/** log A_alpha for fractional alpha (Mironov et al. 2019, Section 3.3): two series in erfc. */
function logAFrac(q: number, sigma: number, alpha: number): number {
  let logA0 = -Infinity;
  let logA1 = -Infinity;
  const z0 = sigma * sigma * Math.log(1 / q - 1) + 0.5;
  // generalized binomial coefficient C(alpha, i), kept as log|C| and its sign
  let logCoef = 0;
  let sign = 1;
  for (let i = 0; i < 10000; i++) {
    if (i > 0) {
      const f = (alpha - i + 1) / i;
      logCoef += Math.log(Math.abs(f));
      if (f < 0) sign = -sign;
    }
    const j = alpha - i;
    const logT0 = logCoef + i * Math.log(q) + j * Math.log(1 - q);
    const logT1 = logCoef + j * Math.log(q) + i * Math.log(1 - q);
    const logE0 = Math.log(0.5) + logErfc((i - z0) / (Math.SQRT2 * sigma));
    const logE1 = Math.log(0.5) + logErfc((z0 - j) / (Math.SQRT2 * sigma));
    const logS0 = logT0 + (i * i - i) / (2 * sigma * sigma) + logE0;
    const logS1 = logT1 + (j * j - j) / (2 * sigma * sigma) + logE1;
    if (sign > 0) {
      logA0 = logAdd(logA0, logS0);
      logA1 = logAdd(logA1, logS1);
    } else {
      logA0 = logSub(logA0, logS0);
      logA1 = logSub(logA1, logS1);
    }
    if (Math.max(logS0, logS1) < -30) break;
  }
  return logAdd(logA0, logA1);
}

/** RDP of one step of the sampled Gaussian mechanism at order alpha. */
export function rdpSampledGaussian(q: number, sigma: number, alpha: number): number {
  if (q === 0) return 0;
  if (q === 1) return alpha / (2 * sigma * sigma);
  if (!Number.isFinite(sigma) || sigma <= 0) return Infinity;
  const logA = Number.isInteger(alpha) ? logAInt(q, sigma, alpha) : logAFrac(q, sigma, alpha);
  return logA / (alpha - 1);
}

export interface PrivacySpent {
  epsilon: number;
  delta: number;
  /** the order that gave the smallest epsilon */
  order: number;
}

/** (epsilon, delta) after `steps` steps of sampling rate q and noise multiplier sigma. */
export function privacySpent(q: number, sigma: number, steps: number, delta: number, orders = DEFAULT_ORDERS): PrivacySpent {
  let best: PrivacySpent = { epsilon: Infinity, delta, order: NaN };
  for (const a of orders) {
    const eps = steps * rdpSampledGaussian(q, sigma, a) + Math.log(1 / delta) / (a - 1);
    if (eps < best.epsilon) best = { epsilon: eps, delta, order: a };
  }
  return best;
}

/**
 * The smallest noise multiplier whose (epsilon, delta) after `steps` steps stays within the
 * target (bisection on sigma; epsilon falls monotonically as sigma grows).
 */
export function calibrateSigma(target: { epsilon: number; delta: number }, q: number, steps: number, where = 'federated.dp'): number {
  if (!(target.epsilon > 0)) {
    throw new HepolyError(`${where}.epsilon: expected a positive privacy budget, found ${target.epsilon}. Set epsilon > 0 (e.g. 1, 4 or 8), or remove dp to train without differential privacy`);
  }
  let lo = 0.05;
  let hi = 1e4;
  if (privacySpent(q, hi, steps, target.delta).epsilon > target.epsilon) {
    throw new HepolyError(`${where}: epsilon ${target.epsilon} at delta ${target.delta} is out of reach for ${steps} steps even with noise multiplier ${hi}. Raise epsilon or delta, or lower the rounds`);
  }
  for (let k = 0; k < 60; k++) {
    const mid = Math.sqrt(lo * hi);
    if (privacySpent(q, mid, steps, target.delta).epsilon > target.epsilon) lo = mid;
    else hi = mid;
  }
  return hi;
}
