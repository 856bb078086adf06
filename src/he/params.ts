import { existsSync, readFileSync } from 'node:fs';
import { HepolyError } from '../util/errors.js';

/**
 * CKKS parameters: the security table, the automatic choice from a program's depth and value
 * magnitudes, and the checks an expert's `--params FILE` must pass.
 *
 * Chain layout (SEAL convention): `coeffModulusBits = [q0, q1 .. qL, P]`. Each rescale drops
 * the last data prime, so a program of multiplicative depth D needs L >= D; q0 holds the final
 * result (it must exceed scale * max|value|), P is the special prime used only for key
 * switching (it should be at least as large as the data primes, or relinearization and
 * rotations add noise).
 */

/**
 * Largest total coefficient-modulus bit count that keeps 128-bit security for each ring
 * degree: the HomomorphicEncryption.org standard table that SEAL enforces as `tc128`
 * (`CoeffModulus::MaxBitCount`). A test checks these numbers against SEAL itself.
 */
export const TC128_MAX_BITS: Readonly<Record<number, number>> = {
  1024: 27,
  2048: 54,
  4096: 109,
  8192: 218,
  16384: 438,
  32768: 881,
};

export const RING_DEGREES = [1024, 2048, 4096, 8192, 16384, 32768];

/** SEAL never makes primes above 60 bits. */
export const MAX_PRIME_BITS = 60;
/** Below this many bits of scale the CKKS noise (about 2^-20 relative) reaches logit precision. */
export const MIN_SCALE_BITS = 20;
/** The scale `--params auto` aims for at least: errors near 1e-6 of a unit value. */
export const DEFAULT_SCALE_BITS = 26;
/** Largest scale worth paying ring size for (precision beyond float32 weights is wasted). */
export const MAX_USEFUL_SCALE_BITS = 40;

export interface HeParams {
  polyModulusDegree: number;
  /** [q0, q1 .. qL, special] */
  coeffModulusBits: number[];
  /** log2 of the scale every linear layer's output is brought back to */
  scaleBits: number;
}

/** What the compiled program needs from the parameters. */
export interface ParamsRequirement {
  /** multiplicative depth of the program (levels it consumes) */
  depth: number;
  /** bound on |value| of any tensor the program materializes (from ranges.json) */
  maxAbs: number;
  /** slots a ciphertext must have (sample packing lays a tensor plane into one ciphertext) */
  minSlots?: number;
  /** at least this scale (bits) */
  minScaleBits?: number;
}

export interface ParamsSummary {
  polyModulusDegree: number;
  coeffModulusBits: number[];
  totalBits: number;
  maxBitsFor128: number;
  scaleBits: number;
  levels: number;
  depthNeeded: number;
  slots: number;
  headroomBits: number;
  securityBits: number;
}

export function levelsOf(p: HeParams): number {
  return p.coeffModulusBits.length - 2;
}

export function totalBits(p: HeParams): number {
  return p.coeffModulusBits.reduce((a, b) => a + b, 0);
}

/** Bits q0 must have above the scale so the largest value (and its sign) fits, with margin. */
export function headroomBitsFor(maxAbs: number): number {
  return Math.max(4, Math.ceil(Math.log2(Math.max(1, maxAbs))) + 2);
}

export function summarize(p: HeParams, req: ParamsRequirement): ParamsSummary {
  return {
    polyModulusDegree: p.polyModulusDegree,
    coeffModulusBits: [...p.coeffModulusBits],
    totalBits: totalBits(p),
    maxBitsFor128: TC128_MAX_BITS[p.polyModulusDegree] ?? 0,
    scaleBits: p.scaleBits,
    levels: levelsOf(p),
    depthNeeded: req.depth,
    slots: p.polyModulusDegree / 2,
    headroomBits: p.coeffModulusBits[0] - p.scaleBits,
    securityBits: 128,
  };
}

/**
 * The smallest ring that fits the depth at a scale of at least `minScaleBits`, then the
 * largest scale that ring allows (more precision for free). Refuses with the depth needed
 * and the largest depth any secure ring would allow.
 */
export function chooseParams(req: ParamsRequirement): HeParams {
  const minScale = req.minScaleBits ?? DEFAULT_SCALE_BITS;
  const head = headroomBitsFor(req.maxAbs);
  for (const N of RING_DEGREES) {
    if (req.minSlots && N / 2 < req.minSlots) continue;
    const p = paramsAtRing(N, req);
    if (p) return p;
  }
  const maxN = RING_DEGREES[RING_DEGREES.length - 1];
  const q0 = Math.min(MAX_PRIME_BITS, minScale + head);
  const maxDepth = maxDepthAtRing(maxN, req.maxAbs, minScale);
  throw new HepolyError(
    `no 128-bit-secure CKKS parameters fit this network: it needs multiplicative depth ${req.depth} ` +
      `(${req.depth} levels of ${minScale} bits plus ${2 * q0} bits for the first and special primes = ${req.depth * minScale + 2 * q0} bits), ` +
      `but the largest secure ring (N=${maxN}) allows ${TC128_MAX_BITS[maxN]} bits, i.e. depth ${maxDepth}. ` +
      `Use fewer activation layers or lower-degree polynomials (each quad costs 1 level, a degree-d poly ceil(log2 d)), then retrain; ` +
      `or pass --refresh client (the client re-encrypts where the levels run out: interactive, counted in the report)`,
  );
}

/** The largest scale ring N allows for the requirement's depth, or null when it does not fit. */
export function paramsAtRing(N: number, req: ParamsRequirement): HeParams | null {
  const minScale = req.minScaleBits ?? DEFAULT_SCALE_BITS;
  const head = headroomBitsFor(req.maxAbs);
  const budget = TC128_MAX_BITS[N];
  for (let s = MAX_USEFUL_SCALE_BITS; s >= minScale; s--) {
    const q0 = Math.min(MAX_PRIME_BITS, s + head);
    if (q0 - s < head) continue;
    const special = Math.max(q0, s);
    const bits = [q0, ...new Array<number>(req.depth).fill(s), special];
    if (bits.reduce((a, b) => a + b, 0) <= budget && primesExist(N, s, req.depth)) {
      return { polyModulusDegree: N, coeffModulusBits: bits, scaleBits: s };
    }
  }
  return null;
}

/** Most levels a 128-bit-secure chain at ring N holds at the smallest default scale. */
export function maxDepthAtRing(N: number, maxAbs: number, minScale = DEFAULT_SCALE_BITS): number {
  const q0 = Math.min(MAX_PRIME_BITS, minScale + headroomBitsFor(maxAbs));
  return Math.max(0, Math.floor((TC128_MAX_BITS[N] - 2 * q0) / minScale));
}

/** SEAL needs `count` distinct primes of `bits` bits congruent to 1 mod 2N. */
function primesExist(N: number, bits: number, count: number): boolean {
  // primes = 1 mod 2N of `bits` bits: about 2^(bits-1) / (2N ln 2^bits); keep a wide margin
  const estimate = 2 ** (bits - 1) / (2 * N * bits * Math.LN2);
  return bits > Math.log2(2 * N) + 1 && estimate > 4 * (count + 2);
}

/**
 * Every reason an expert's parameters cannot run the program, as one message naming the file,
 * the field, what was found and what to change. Returns quietly when they are fine.
 */
export function checkParams(p: HeParams, req: ParamsRequirement, file = '--params'): void {
  const fail = (field: string, what: string, fix: string) => {
    throw new HepolyError(`${file}: ${field}: ${what}. ${fix}`);
  };
  const N = p.polyModulusDegree;
  if (!RING_DEGREES.includes(N)) {
    fail('poly_modulus_degree', `expected one of ${RING_DEGREES.join(', ')}, found ${N}`, 'Pick a power of two SEAL supports');
  }
  const bits = p.coeffModulusBits;
  if (!Array.isArray(bits) || bits.length < 3 || bits.some((b) => !Number.isInteger(b) || b < 10 || b > MAX_PRIME_BITS)) {
    fail(
      'coeff_modulus_bits',
      `expected at least 3 integers between 10 and ${MAX_PRIME_BITS} ([q0, level primes.., special]), found ${JSON.stringify(bits)}`,
      'List the prime sizes in bits, e.g. [40, 28, 28, 28, 28, 28, 40]',
    );
  }
  const total = totalBits(p);
  const max = TC128_MAX_BITS[N];
  if (total > max) {
    const fitting = RING_DEGREES.find((n) => TC128_MAX_BITS[n] >= total);
    fail(
      'coeff_modulus_bits',
      `${total} bits in total is insecure for poly_modulus_degree ${N} (128-bit security allows at most ${max})`,
      fitting ? `Use poly_modulus_degree ${fitting} or remove primes` : 'Remove primes or use smaller ones',
    );
  }
  const levels = levelsOf(p);
  if (levels < req.depth) {
    fail(
      'coeff_modulus_bits',
      `the network needs depth ${req.depth} but these ${bits.length} primes give ${levels} levels ([q0, ${levels} level primes, special])`,
      `Add ${req.depth - levels} more level prime(s) of ${p.scaleBits} bits${total + (req.depth - levels) * p.scaleBits > max ? ` and raise poly_modulus_degree (the total would exceed ${max} bits)` : ''}, or use --params auto, ` +
        'or pass --refresh client (the client re-encrypts where the levels run out: interactive, counted in the report), or use a shallower model (fewer activation layers)',
    );
  }
  if (!Number.isFinite(p.scaleBits) || p.scaleBits < MIN_SCALE_BITS) {
    fail('scale_bits', `expected at least ${MIN_SCALE_BITS}, found ${p.scaleBits}`, 'A smaller scale loses the logits in CKKS noise');
  }
  const head = headroomBitsFor(req.maxAbs);
  if (bits[0] - p.scaleBits < head) {
    fail(
      'coeff_modulus_bits[0]',
      `q0 = ${bits[0]} bits leaves ${bits[0] - p.scaleBits} bits above the ${p.scaleBits}-bit scale, but values reach ${req.maxAbs.toPrecision(3)} (needs ${head} bits)`,
      p.scaleBits + head <= MAX_PRIME_BITS
        ? `Make q0 at least ${p.scaleBits + head} bits or lower scale_bits`
        : `q0 cannot exceed ${MAX_PRIME_BITS} bits (SEAL's prime limit), so lower scale_bits to at most ${MAX_PRIME_BITS - head} (level primes to match) with q0 = ${MAX_PRIME_BITS}, or use --params auto`,
    );
  }
  const middle = bits.slice(1, -1);
  const off = middle.find((b) => Math.abs(b - p.scaleBits) > 2);
  if (off !== undefined) {
    fail(
      'coeff_modulus_bits',
      `level prime of ${off} bits is far from scale_bits ${p.scaleBits}: rescaling by it would shrink or blow up the scale`,
      `Make every level prime ${p.scaleBits} bits`,
    );
  }
  const special = bits[bits.length - 1];
  if (special < Math.max(...bits.slice(0, -1))) {
    fail(
      'coeff_modulus_bits',
      `the special prime (last, ${special} bits) is smaller than a data prime (${Math.max(...bits.slice(0, -1))} bits), so key switching would add noise`,
      'Make the last prime at least as large as the others',
    );
  }
  if (req.minSlots && N / 2 < req.minSlots) {
    fail('poly_modulus_degree', `${N / 2} slots cannot hold one ${req.minSlots}-value plane of sample packing`, `Use poly_modulus_degree ${2 * req.minSlots} or --packing batch`);
  }
}

/** Reads `{poly_modulus_degree, coeff_modulus_bits, scale_bits}` from a JSON file. */
export function loadParamsFile(path: string): HeParams {
  if (!existsSync(path)) throw new HepolyError(`--params ${path}: file not found. Pass a JSON file or \`--params auto\``);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new HepolyError(`${path}: not valid JSON (${(e as Error).message}). Expected {"poly_modulus_degree": 16384, "coeff_modulus_bits": [40, 30, 30, 40], "scale_bits": 30}`);
  }
  const o = raw as Record<string, unknown>;
  const need = (k: string) => {
    if (!(k in o)) throw new HepolyError(`${path}: ${k}: missing. Expected {"poly_modulus_degree": N, "coeff_modulus_bits": [..], "scale_bits": S}`);
    return o[k];
  };
  const N = need('poly_modulus_degree');
  const bits = need('coeff_modulus_bits');
  const known = new Set(['poly_modulus_degree', 'coeff_modulus_bits', 'scale_bits']);
  const unknown = Object.keys(o).filter((k) => !known.has(k));
  if (unknown.length) throw new HepolyError(`${path}: ${unknown[0]}: unknown key. Allowed: ${[...known].join(', ')}`);
  if (typeof N !== 'number') throw new HepolyError(`${path}: poly_modulus_degree: expected a number, found ${JSON.stringify(N)}`);
  if (!Array.isArray(bits)) throw new HepolyError(`${path}: coeff_modulus_bits: expected an array of prime sizes in bits, found ${JSON.stringify(bits)}`);
  const scale = o.scale_bits ?? (bits.length > 2 ? bits[1] : undefined);
  if (typeof scale !== 'number') throw new HepolyError(`${path}: scale_bits: expected a number, found ${JSON.stringify(scale)}`);
  return { polyModulusDegree: N, coeffModulusBits: bits as number[], scaleBits: scale };
}

export function describeParams(p: HeParams): string {
  return `N=${p.polyModulusDegree} (${p.polyModulusDegree / 2} slots), coeff modulus [${p.coeffModulusBits.join(', ')}] = ${totalBits(p)} bits (128-bit security allows ${TC128_MAX_BITS[p.polyModulusDegree]}), scale 2^${p.scaleBits}, ${levelsOf(p)} levels`;
}
