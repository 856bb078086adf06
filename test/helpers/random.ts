/** Deterministic values in [-1, 1) from a seed (a linear congruential generator): test inputs. */
export function random(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}
