import type { Entries } from '../linear-map.js';
import type { Layout } from './layout.js';

/**
 * The diagonal method over arbitrary layouts. A linear map y = M x between two slot layouts is
 * a sum over offsets d of diag_d (element-wise) rot_d(x), where rot_d(x)[s] = x[s + d]: entry
 * M[o, i] goes to diagonal d = slot(i) - slot(o) at position slot(o). Only offsets that carry
 * a non-zero entry are kept, so no plaintext is all zeros.
 *
 * Baby-step giant-step: d = g + b with b = d mod B; rot_d(x) = rot_g(rot_b(x)) and
 * diag_d . rot_g(z) = rot_g(rot_{-g}(diag_d) . z), so each input ciphertext is rotated once per
 * distinct b and each output's partial sum once per distinct g. B is chosen to minimize the
 * rotation count.
 */
export interface Diag {
  ctOut: number;
  /** index into the step's list of input ciphertexts (all terms concatenated) */
  input: number;
  d: number;
  v: Float64Array;
}

export class DiagSet {
  /** keyed by (ctOut, input, d) packed into one number (d < slots <= 2^15, input < 2^20) */
  readonly map = new Map<number, Diag>();
  constructor(readonly slots: number) {}

  private diag(ctOut: number, input: number, d: number): Diag {
    const key = (ctOut * 1048576 + input) * 32768 + d;
    let e = this.map.get(key);
    if (!e) {
      e = { ctOut, input, d, v: new Float64Array(this.slots) };
      this.map.set(key, e);
    }
    return e;
  }

  /** w at `len` consecutive slots from `slot` (len > 1: one weight shared by interleaved samples) */
  add(ctOut: number, input: number, d: number, slot: number, w: number, len = 1): void {
    const v = this.diag(ctOut, input, d).v;
    for (let k = 0; k < len; k++) v[slot + k] += w;
  }
}

/**
 * Entries of one term, output placed at fixed slots (every replica of o gets the sum). The
 * input replica is the one with the smallest non-negative offset, which keeps offsets equal
 * across output positions for regular (plane) layouts.
 *
 * `run` > 1: the layouts hold `run` interleaved samples (sample s of element e at the
 * positions of e plus s) and the entries, one sample's map, apply to each. The run of one
 * entry shares its diagonal and ciphertexts, so each entry is placed once and fills `run`
 * slots. Every position must start a run inside one ciphertext (`runsAligned` checks it).
 */
export function addPlaced(ds: DiagSet, e: Entries, inL: Layout, inputBase: number, outL: Layout, run = 1): void {
  const slots = ds.slots;
  for (let k = 0; k < e.length; k++) {
    const o = e.out[k];
    const i = e.inp[k];
    for (const rep of outL.replicas) {
      const po = rep[o];
      if (po < 0) continue;
      let best = -1;
      let bestD = Infinity;
      for (const irep of inL.replicas) {
        const pi = irep[i];
        if (pi < 0) continue;
        const d = (((pi % slots) - (po % slots)) % slots + slots) % slots;
        if (d < bestD) {
          bestD = d;
          best = pi;
        }
      }
      if (best < 0) continue;
      ds.add(Math.floor(po / slots), inputBase + Math.floor(best / slots), bestD, po % slots, e.w[k], run);
    }
  }
}

/**
 * Entries of a dense term in the folded form (Halevi-Shoup hybrid): entry (o, i) lands on
 * diagonal d = (slot(i) - o) mod P at position slot(i) - d, which is congruent to o mod P.
 * After summing, rotate-and-add by P, 2P, ... collects every partial sum of o, so only P
 * diagonals exist however long the input is. P = period of the output layout. `run`: as for
 * `addPlaced`.
 */
export function addFolded(ds: DiagSet, e: Entries, inL: Layout, inputBase: number, period: number, run = 1): void {
  const slots = ds.slots;
  const prim = inL.replicas[0];
  for (let k = 0; k < e.length; k++) {
    // sample 0 of output o sits at o*run in the period
    const o = e.out[k] * run;
    const pi = prim[e.inp[k]];
    if (pi < 0) continue;
    const s = pi % slots;
    const d = (((s - o) % period) + period) % period;
    ds.add(0, inputBase + Math.floor(pi / slots), d, (s - d + slots) % slots, e.w[k], run);
  }
}

/** Whether every position of `l` starts a run of `run` slots (a multiple of run, so inside one ciphertext). */
export function runsAligned(l: Layout, run: number): boolean {
  for (const rep of l.replicas) for (const g of rep) if (g >= 0 && g % run) return false;
  return true;
}

export interface GiantBlock {
  g: number;
  items: { input: number; b: number; v: Float64Array }[];
}

export interface BsgsPlan {
  B: number;
  /** per input ciphertext: the baby rotations it needs (0 = itself) */
  babies: Map<number, number[]>;
  /** per output ciphertext: giant steps with their (input, baby, pre-rotated diagonal) items */
  outputs: Map<number, GiantBlock[]>;
  rotations: number;
  diagonals: number;
}

function rotationCount(diags: Diag[], B: number): number {
  const babies = new Map<number, Set<number>>();
  const giants = new Map<number, Set<number>>();
  for (const x of diags) {
    const b = x.d % B;
    const g = x.d - b;
    if (!babies.has(x.input)) babies.set(x.input, new Set());
    if (!giants.has(x.ctOut)) giants.set(x.ctOut, new Set());
    if (b) babies.get(x.input)!.add(b);
    if (g) giants.get(x.ctOut)!.add(g);
  }
  let n = 0;
  for (const s of babies.values()) n += s.size;
  for (const s of giants.values()) n += s.size;
  return n;
}

export function planBsgs(ds: DiagSet): BsgsPlan {
  const diags = [...ds.map.values()];
  const slots = ds.slots;
  let bestB = slots;
  let best = Infinity;
  for (let B = 1; B <= slots; B *= 2) {
    const n = rotationCount(diags, B);
    if (n < best) {
      best = n;
      bestB = B;
    }
  }
  const B = bestB;
  const babies = new Map<number, number[]>();
  const outputs = new Map<number, Map<number, GiantBlock>>();
  for (const x of diags) {
    const b = x.d % B;
    const g = x.d - b;
    const bs = babies.get(x.input) ?? [];
    if (!bs.includes(b)) bs.push(b);
    babies.set(x.input, bs);
    if (!outputs.has(x.ctOut)) outputs.set(x.ctOut, new Map());
    const blocks = outputs.get(x.ctOut)!;
    if (!blocks.has(g)) blocks.set(g, { g, items: [] });
    // pre-rotate by -g: diag'[s] = diag[s - g]
    const v = g === 0 ? x.v : rotateVec(x.v, -g);
    blocks.get(g)!.items.push({ input: x.input, b, v });
  }
  for (const bs of babies.values()) bs.sort((a, b) => a - b);
  const out = new Map<number, GiantBlock[]>();
  for (const [ct, blocks] of outputs) out.set(ct, [...blocks.values()].sort((a, b) => a.g - b.g));
  return { B, babies, outputs: out, rotations: best, diagonals: diags.length };
}

/** r[s] = v[s + k] (cyclic), the slot rotation SEAL's rotate_vector applies. */
export function rotateVec(v: Float64Array, k: number): Float64Array {
  const n = v.length;
  const s = ((k % n) + n) % n;
  const r = new Float64Array(n);
  for (let i = 0; i < n; i++) r[i] = v[(i + s) % n];
  return r;
}
