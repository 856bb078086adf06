import type { CkksBackend } from './backend.js';
import type { HeParams } from './params.js';
import { levelsOf } from './params.js';
import { makeRng, type Rng } from '../util/rng.js';

/**
 * `--mode simulate`: the CKKS schedule on float64 vectors. Levels, scales, rescale points,
 * rotations and plaintext rounding are the real ones; encryption is not. It catches the two
 * failures that matter before spending minutes on ciphertexts: a value that overflows the
 * modulus at its level (reported with the level and scale), and precision lost to a small
 * scale (plaintext weights are rounded to their scale, and CKKS noise is added with the
 * magnitudes SEAL shows at these parameters).
 */
export interface SimCt {
  v: Float64Array;
  level: number;
  scale: number;
}

export interface SimPt {
  v: Float64Array;
  scale: number;
  level: number;
}

export class SimOverflowError extends Error {}

/**
 * Noise standard deviations per slot, in units of 1/scale, fitted to node-seal 6.0.3 (SEAL 4.1)
 * measurements: a fresh (symmetric) encryption ~2.3 sqrt(N) (148 at N=4096, 209 at 8192); a
 * rescale adds the rounding of c/q, which with a ternary secret of weight ~2N/3 is about
 * 0.7 sqrt(N (1 + 2N/3) / 12) (690 at N=4096). Rescale noise dominates every linear layer.
 */
export function freshNoiseStd(N: number): number {
  return 2.3 * Math.sqrt(N);
}
export function rescaleNoiseStd(N: number): number {
  return 0.7 * Math.sqrt((N * (1 + (2 * N) / 3)) / 12);
}

export class SimBackend implements CkksBackend<SimCt, SimPt> {
  readonly slots: number;
  readonly topLevel: number;
  readonly scale: number;
  private readonly bits: number[];
  private readonly rng: Rng;
  private readonly N: number;

  constructor(
    params: HeParams,
    private readonly opts: { noise: boolean; seed?: number } = { noise: true },
  ) {
    this.N = params.polyModulusDegree;
    this.slots = this.N / 2;
    this.topLevel = levelsOf(params);
    this.scale = 2 ** params.scaleBits;
    this.bits = params.coeffModulusBits.slice(0, -1);
    this.rng = makeRng(opts.seed ?? 1, 'he-sim-noise');
  }

  prime(level: number): number {
    return 2 ** this.bits[level];
  }

  private logQ(level: number): number {
    let b = 0;
    for (let i = 0; i <= level; i++) b += this.bits[i];
    return b;
  }

  /** |value| * scale must stay below Q/2 at the ciphertext's level, or decryption wraps. */
  private check(c: SimCt, what: string): SimCt {
    let m = 0;
    for (let i = 0; i < c.v.length; i++) {
      const a = Math.abs(c.v[i]);
      if (a > m) m = a;
    }
    if (!Number.isFinite(m) || Math.log2(m || 1e-300) + Math.log2(c.scale) >= this.logQ(c.level) - 1) {
      throw new SimOverflowError(
        `simulated overflow after ${what}: |value| reaches ${m.toPrecision(4)} at scale 2^${Math.log2(c.scale).toFixed(1)} on level ${c.level} (modulus 2^${this.logQ(c.level)})`,
      );
    }
    return c;
  }

  private noise(v: Float64Array, std: number): void {
    if (!this.opts.noise) return;
    for (let i = 0; i < v.length; i++) v[i] += std * this.rng.normal();
  }

  levelOf(c: SimCt): number {
    return c.level;
  }
  scaleOf(c: SimCt): number {
    return c.scale;
  }
  setScale(c: SimCt, scale: number): void {
    c.scale = scale;
  }
  free(): void {}
  clone(c: SimCt): SimCt {
    return { v: Float64Array.from(c.v), level: c.level, scale: c.scale };
  }

  private same(a: SimCt, b: SimCt): void {
    if (a.level !== b.level) throw new Error(`internal: adding ciphertexts at levels ${a.level} and ${b.level}`);
    if (Math.abs(a.scale - b.scale) > 1e-9 * a.scale) throw new Error(`internal: adding scales 2^${Math.log2(a.scale)} and 2^${Math.log2(b.scale)}`);
  }

  add(a: SimCt, b: SimCt): SimCt {
    const out = this.clone(a);
    this.addInPlace(out, b);
    return out;
  }
  addInPlace(acc: SimCt, b: SimCt): void {
    this.same(acc, b);
    for (let i = 0; i < acc.v.length; i++) acc.v[i] += b.v[i];
  }
  negateInPlace(c: SimCt): void {
    for (let i = 0; i < c.v.length; i++) c.v[i] = -c.v[i];
  }
  subInPlace(acc: SimCt, b: SimCt): void {
    this.same(acc, b);
    for (let i = 0; i < acc.v.length; i++) acc.v[i] -= b.v[i];
  }

  /** The value a plaintext actually carries: rounded to a multiple of 1/scale. */
  private quantize(value: number, scale: number): number {
    return Math.round(value * scale) / scale;
  }

  mulConst(c: SimCt, value: number, ptScale: number): SimCt {
    const q = this.quantize(value, ptScale);
    const out = { v: c.v.map((x) => x * q), level: c.level, scale: c.scale * ptScale };
    return this.check(out, 'a plaintext product');
  }
  mulConstAddInPlace(acc: SimCt, c: SimCt, value: number, ptScale: number): void {
    const q = this.quantize(value, ptScale);
    if (acc.level !== c.level) throw new Error('internal: level mismatch');
    for (let i = 0; i < acc.v.length; i++) acc.v[i] += c.v[i] * q;
  }
  addConstInPlace(c: SimCt, value: number): void {
    const q = this.quantize(value, c.scale);
    for (let i = 0; i < c.v.length; i++) c.v[i] += q;
  }

  encode(values: Float64Array, scale: number, level: number): SimPt {
    const v = new Float64Array(this.slots);
    for (let i = 0; i < Math.min(values.length, this.slots); i++) v[i] = this.quantize(values[i], scale);
    return { v, scale, level };
  }
  encodeConst(value: number, scale: number, level: number): SimPt {
    return { v: new Float64Array(this.slots).fill(this.quantize(value, scale)), scale, level };
  }
  freePlain(): void {}
  mulPlain(c: SimCt, p: SimPt): SimCt {
    if (p.level !== c.level) throw new Error(`internal: plaintext at level ${p.level}, ciphertext at ${c.level}`);
    return this.check({ v: c.v.map((x, i) => x * p.v[i]), level: c.level, scale: c.scale * p.scale }, 'a plaintext product');
  }
  mulPlainAddInPlace(acc: SimCt, c: SimCt, p: SimPt): void {
    for (let i = 0; i < acc.v.length; i++) acc.v[i] += c.v[i] * p.v[i];
  }
  addPlainInPlace(c: SimCt, p: SimPt): void {
    if (p.level !== c.level || Math.abs(p.scale - c.scale) > 1e-9 * c.scale) throw new Error('internal: plaintext level/scale mismatch');
    for (let i = 0; i < c.v.length; i++) c.v[i] += p.v[i];
  }
  addVecInPlace(c: SimCt, values: Float64Array): void {
    for (let i = 0; i < Math.min(values.length, c.v.length); i++) c.v[i] += this.quantize(values[i], c.scale);
  }

  multiply(a: SimCt, b: SimCt): SimCt {
    if (a.level !== b.level) throw new Error('internal: multiplying ciphertexts at different levels');
    return this.check({ v: a.v.map((x, i) => x * b.v[i]), level: a.level, scale: a.scale * b.scale }, 'a ciphertext product');
  }
  square(c: SimCt): SimCt {
    return this.multiply(c, c);
  }
  rescaleInPlace(c: SimCt): void {
    if (c.level === 0) throw new SimOverflowError('simulated rescale below level 0: the program needs more levels than the parameters give');
    this.check(c, 'accumulating before a rescale');
    c.scale /= this.prime(c.level);
    c.level -= 1;
    this.noise(c.v, rescaleNoiseStd(this.N) / c.scale);
  }
  modSwitchInPlace(c: SimCt, level: number): void {
    if (level > c.level) throw new Error('internal: cannot raise a level');
    c.level = level;
    this.check(c, 'switching down a level');
  }
  rotate(c: SimCt, steps: number): SimCt {
    const n = this.slots;
    const s = ((steps % n) + n) % n;
    const v = new Float64Array(n);
    for (let i = 0; i < n; i++) v[i] = c.v[(i + s) % n];
    return { v, level: c.level, scale: c.scale };
  }
  encryptVec(values: Float64Array, scale: number, level: number): SimCt {
    const p = this.encode(values, scale, level);
    const c = { v: p.v, level, scale };
    this.noise(c.v, freshNoiseStd(this.N) / scale);
    return c;
  }
  /** The client side of the simulation: what decrypting a fresh encryption of `values` gives. */
  encryptInput(values: Float64Array): SimCt {
    return this.encryptVec(values, this.scale, this.topLevel);
  }

  serialize(c: SimCt): Uint8Array {
    const out = new Float64Array(c.v.length + 2);
    out[0] = c.level;
    out[1] = c.scale;
    out.set(c.v, 2);
    return new Uint8Array(out.buffer);
  }
  deserialize(bytes: Uint8Array): SimCt {
    const f = new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    return { level: f[0], scale: f[1], v: f.slice(2) };
  }
}
