import seedrandom from 'seedrandom';

/**
 * Seeded random numbers. Every random choice in hepoly (split, shuffle, weight init) draws
 * from a generator derived from the recipe seed and a purpose string, so one purpose never
 * shifts another's stream and a resumed run can recreate any epoch's shuffle from scratch.
 */
export interface Rng {
  /** uniform in [0, 1) */
  next(): number;
  /** standard normal (Box-Muller) */
  normal(): number;
  /** integer in [0, n) */
  int(n: number): number;
}

export function makeRng(seed: number, purpose: string): Rng {
  const prng = seedrandom.alea(`${seed}:${purpose}`);
  let spare: number | null = null;
  return {
    next: () => prng(),
    int: (n: number) => Math.floor(prng() * n),
    normal: () => {
      if (spare !== null) {
        const s = spare;
        spare = null;
        return s;
      }
      let u = 0;
      while (u === 0) u = prng();
      const v = prng();
      const r = Math.sqrt(-2 * Math.log(u));
      spare = r * Math.sin(2 * Math.PI * v);
      return r * Math.cos(2 * Math.PI * v);
    },
  };
}

/** Fisher-Yates permutation of 0..n-1. */
export function permutation(n: number, rng: Rng): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}
