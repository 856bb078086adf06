import { HepolyError } from '../../util/errors.js';
import {
  type HeParams,
  DEFAULT_SCALE_BITS,
  MAX_PRIME_BITS,
  MAX_USEFUL_SCALE_BITS,
  RING_DEGREES,
  TC128_MAX_BITS,
  checkParams,
  chooseParams,
  headroomBitsFor,
  levelsOf,
} from '../params.js';

/**
 * CKKS parameters for the transformer evaluator. Without refresh the chain must hold the whole
 * depth (`chooseParams`, the CNN path's choice). With `--refresh client` the depth no longer
 * matters, only the longest stretch between two refresh points; a small ring is then much
 * faster per operation than the largest one, so the smallest ring giving that many levels wins.
 */

/**
 * The longest stretch the evaluator asks for in one go: scores, power p=2 and the value
 * product (2 + log2 p), a Newton step (2), a quad (2). Four levels leave room for p=4.
 */
export const SEGMENT_LEVELS = 4;

export type RefreshMode = 'none' | 'client';

export function parseRefresh(v: string | undefined): RefreshMode {
  if (v === undefined || v === 'none') return 'none';
  if (v === 'client') return 'client';
  throw new HepolyError(`--refresh: expected client or none, found ${JSON.stringify(v)}`);
}

/** The smallest 128-bit-secure ring with `levels` levels at the largest scale it allows. */
export function chooseRefreshParams(maxAbs: number, levels = SEGMENT_LEVELS): HeParams {
  const head = headroomBitsFor(maxAbs);
  for (const N of RING_DEGREES) {
    for (let s = MAX_USEFUL_SCALE_BITS; s >= DEFAULT_SCALE_BITS; s--) {
      const q0 = Math.min(MAX_PRIME_BITS, s + head);
      if (q0 - s < head) continue;
      const bits = [q0, ...new Array<number>(levels).fill(s), q0];
      if (bits.reduce((a, b) => a + b, 0) <= TC128_MAX_BITS[N] && N >= 4096) return { polyModulusDegree: N, coeffModulusBits: bits, scaleBits: s };
    }
  }
  throw new HepolyError(`no 128-bit-secure ring holds ${levels} levels with values up to ${maxAbs.toPrecision(3)}`);
}

/** Parameters for a program of `depth` levels without refresh, or the refusal naming the options. */
export function chooseUnrefreshedParams(depth: number, maxAbs: number): HeParams {
  try {
    return chooseParams({ depth, maxAbs });
  } catch (e) {
    if (!(e instanceof HepolyError)) throw e;
    throw new HepolyError(`${e.message.replace(/\. Use fewer.*$/, '')}. Options: --refresh client (the client decrypts and re-encrypts between segments, each refresh counted in the report), --mode simulate --refresh client to check the model first, or a shallower model (fewer layers, power-softmax p=2, a narrower denominator range needs fewer Newton iterations)`);
  }
}

/** Refuses a `--params FILE` chain that cannot run the evaluator. */
export function checkSequenceParams(p: HeParams, depth: number, maxAbs: number, refresh: RefreshMode, file: string): void {
  if (refresh === 'none' && levelsOf(p) < depth) {
    throw new HepolyError(
      `${file}: coeff_modulus_bits: the transformer needs depth ${depth} but these primes give ${levelsOf(p)} levels. Options: --refresh client (the client re-encrypts between segments), or more level primes within the 128-bit budget`,
    );
  }
  checkParams(p, { depth: refresh === 'client' ? SEGMENT_LEVELS : depth, maxAbs }, file);
}
