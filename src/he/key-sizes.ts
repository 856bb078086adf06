import type { HeParams } from './params.js';

/**
 * Bytes one process holds for Galois keys of `count` rotation steps: each key switches over
 * every data prime, and each part is a two-polynomial ciphertext over the whole chain.
 */
export function galoisKeyBytes(params: HeParams, count: number): number {
  const primes = params.coeffModulusBits.length;
  return count * (primes - 1) * 2 * primes * params.polyModulusDegree * 8;
}

/** Galois keys beyond this abort SEAL (measured: 29 keys, 1.5 GiB, at N=16384 ran its wasm heap out while serializing). */
export const GALOIS_KEY_BUDGET = 0.75 * 2 ** 30;

/** Rotation steps as SEAL expects them: distinct, non-zero, in [1, slots). */
export function normalizeSteps(steps: number[], slots: number): number[] {
  const set = new Set<number>();
  for (const s of steps) {
    const n = ((s % slots) + slots) % slots;
    if (n !== 0) set.add(n);
  }
  return [...set].sort((a, b) => a - b);
}
