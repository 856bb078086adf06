import { existsSync, readFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { HEClient } from '../client.js';
import { loadEvaluationKeys, deleteEvaluationKeys } from '../keys.js';
import { SealBackend } from '../seal-backend.js';
import type { CipherText, PlainText } from '../seal.js';
import type { HeParams } from '../params.js';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { median } from '../../util/stats.js';
import { OP_KINDS, type OpKind } from './dry-run.js';

/**
 * Per-operation times of node-seal on this machine, measured once per parameter set and
 * cached. An operation's cost is close to linear in the primes a ciphertext still has, so
 * each is timed at the top of the chain and at its bottom and interpolated in between:
 * ms(level) = base + perPrime * (level + 1).
 */
export interface OpTiming {
  base: number;
  perPrime: number;
}

export interface Calibration {
  key: string;
  measuredAt: string;
  ops: Record<OpKind, OpTiming>;
  /** ms of speedProbe() when the operations were timed (absent in old caches) */
  probeMs?: number;
}

/**
 * A fixed piece of node-seal work, timed when the operations are, whenever the cache is read,
 * and in the thread a measured pass runs in: on a shared host the same operations run up to
 * ~1.6x slower while a neighbour is busy, and the ratio of two probe times carries a
 * calibration over to the speed of now. The probe is SEAL's own key-switching rotation (N =
 * 8192, 7 primes: a 5 MiB Galois key streamed per call), not a CPU loop: a cache-resident loop
 * kept its speed through a slowdown that made every SEAL operation 1.6x slower (likely memory or
 * cache contention rather than CPU share).
 */
export async function speedProbe(): Promise<number> {
  const kit = (probeKit ??= await makeProbeKit());
  const times: number[] = [];
  for (let i = 0; i < 11; i++) {
    const t = performance.now();
    kit.be.free(kit.be.rotate(kit.ct, 1));
    times.push(performance.now() - t);
  }
  return median(times);
}

const PROBE_PARAMS: HeParams = { polyModulusDegree: 8192, coeffModulusBits: [36, 28, 28, 28, 28, 28, 36], scaleBits: 28 };

/** One per thread, kept for the thread's life (a few MiB of SEAL heap). */
let probeKit: { be: SealBackend; ct: CipherText } | null = null;

async function makeProbeKit(): Promise<{ be: SealBackend; ct: CipherText }> {
  const client = await HEClient.create(PROBE_PARAMS);
  const keys = loadEvaluationKeys(client.ctx, client.publicBundle([1]));
  const be = new SealBackend(client.ctx, keys);
  const ct = be.deserialize(client.encrypt([Float64Array.from({ length: be.slots }, (_, i) => Math.cos(i))])[0]);
  be.free(be.rotate(ct, 1)); // the first call grows the pools
  return { be, ct };
}

/** One probe serves every calibration read within this window (a plan reads one per ring). */
const PROBE_REUSE_MS = 30_000;
let lastProbe: { at: number; ms: number } | null = null;

async function probeNow(): Promise<number> {
  const now = performance.now();
  if (!lastProbe || now - lastProbe.at > PROBE_REUSE_MS) lastProbe = { at: now, ms: await speedProbe() };
  return lastProbe.ms;
}

/** The calibration with every time scaled by how much slower (or faster) this machine runs now. */
export function atCurrentSpeed(c: Calibration, probeMs: number): Calibration {
  if (!c.probeMs || !(probeMs > 0)) return c;
  const f = probeMs / c.probeMs;
  const ops = {} as Record<OpKind, OpTiming>;
  for (const [k, t] of Object.entries(c.ops) as [OpKind, OpTiming][]) ops[k] = { base: t.base * f, perPrime: t.perPrime * f };
  return { ...c, ops, probeMs };
}

export function opMs(c: Calibration, kind: OpKind, level: number): number {
  const t = c.ops[kind];
  return Math.max(0, t.base + t.perPrime * (level + 1));
}

/** Bumped when the way operations are timed changes, so older caches are measured again. */
const METHOD = 'median-seal-probe-sums-pairs4-plains';

/**
 * What an operation's cost depends on: the ring and how many primes the chain has, not their
 * bit sizes (SEAL keeps every prime of up to 61 bits in one 64-bit word, so [40, 27, 40] and
 * [60, 40, 60] cost the same), so chains of one length share one calibration.
 */
export function calibrationKey(p: HeParams): string {
  return `${METHOD} N=${p.polyModulusDegree} primes=${p.coeffModulusBits.length} node=${process.version} cpu=${cpus()[0]?.model ?? '?'}`;
}

/**
 * Where calibrations are cached: HEPOLY_CALIBRATION_CACHE (HEPOLY_CALIBRATION, its older name)
 * or the system temp folder. The tests point it at a temporary file of their own, so what a
 * run measures and which packing `--packing auto` picks never depend on an earlier run's cache.
 */
export function defaultCachePath(): string {
  return process.env.HEPOLY_CALIBRATION_CACHE || process.env.HEPOLY_CALIBRATION || join(tmpdir(), 'hepoly-he-calibration.json');
}

function readCache(path: string): Record<string, Calibration> {
  if (!existsSync(path)) return {};
  try {
    const v = JSON.parse(readFileSync(path, 'utf8')) as Record<string, Calibration>;
    return v && typeof v === 'object' ? v : {};
  } catch {
    // a damaged cache is only a cache: measure again
    return {};
  }
}

/** The cached calibration for these parameters, or a fresh micro-benchmark (a few seconds). */
export async function calibration(p: HeParams, opts: { cachePath?: string; force?: boolean; log?: (s: string) => void } = {}): Promise<Calibration> {
  const path = opts.cachePath ?? defaultCachePath();
  const key = calibrationKey(p);
  const cache = readCache(path);
  // an entry without its speed probe (written before probes existed) cannot be brought to the
  // machine's present load: measured under another load it was off by up to 3x; measure again
  if (!opts.force && cache[key]?.probeMs) return atCurrentSpeed(cache[key], await probeNow());
  opts.log?.(`calibrating node-seal operations at N=${p.polyModulusDegree} (cached in ${path})`);
  const c = await microBenchmark(p);
  writeFileAtomic(path, JSON.stringify({ ...readCache(path), [key]: c }, null, 1));
  // its own probe serves the cached reads that follow (as probeNow would), so a ring measured
  // just now and one read from the cache are compared at one speed (else a plan ranks
  // differently on a cold and a warm cache)
  lastProbe = { at: performance.now(), ms: c.probeMs! };
  return c;
}

/**
 * Median ms of fn over enough repetitions to fill `budgetMs` (at least 3). The median, not the
 * mean: on shared cores a neighbour's burst slows a stretch of calls by up to ~40%, and a
 * mean over 120 ms carries that burst into every prediction made from the cache.
 */
function timeIt(fn: () => void, budgetMs = 120): number {
  fn(); // warm-up: first calls allocate SEAL's memory pool
  const times: number[] = [];
  const t0 = performance.now();
  while (times.length < 3 || performance.now() - t0 < budgetMs) {
    const t = performance.now();
    fn();
    times.push(performance.now() - t);
    if (times.length >= 400) break;
  }
  return median(times);
}

async function microBenchmark(p: HeParams): Promise<Calibration> {
  const client = await HEClient.create(p);
  const bundle = client.publicBundle([1]);
  const keys = loadEvaluationKeys(client.ctx, bundle);
  const be = new SealBackend(client.ctx, keys);
  const slots = be.slots;
  const vec = Float64Array.from({ length: slots }, (_, i) => Math.sin(i));
  const fresh = client.encrypt([vec])[0];
  const top = be.topLevel;
  const at = (level: number): CipherText => {
    const c = be.deserialize(fresh);
    if (level < top) be.modSwitchInPlace(c, level);
    return c;
  };
  const low = top >= 1 ? 1 : 0;
  const measure = (level: number): Record<OpKind, number> => {
    const a = at(level);
    const b = at(level);
    const pt: PlainText = be.encode(vec, be.scale, level);
    const bytes = be.serialize(a);
    const r = {} as Record<OpKind, number>;
    r.rotate = timeIt(() => be.free(be.rotate(a, 1)));
    r.multiply = timeIt(() => be.free(be.multiply(a, b)));
    r.multiplyNoRelin = timeIt(() => be.free(be.multiplyNoRelin(a, b)));
    r.relinearize = Math.max(0, r.multiply - r.multiplyNoRelin);
    r.mulPlain = timeIt(() => be.free(be.mulPlain(a, pt)));
    r.mulConst = timeIt(() => be.free(be.mulConst(a, 0.37, be.scale)));
    r.add = timeIt(() => be.addInPlace(a, b));
    r.rescale = level >= 1 ? timeIt(() => {
      const t = be.mulConst(a, 0.5, be.scale);
      be.rescaleInPlace(t);
      be.free(t);
    }) - r.mulConst : 0;
    r.encode = timeIt(() => be.freePlain(be.encode(vec, be.scale, level)));
    r.clone = timeIt(() => be.free(be.clone(a)));
    r.serialize = timeIt(() => void be.serialize(a));
    r.deserialize = timeIt(() => be.free(be.deserialize(bytes)));
    Object.assign(r, sumCosts(be, a, level), pairCosts(be, a, level), plainCosts(be, a, level));
    r.encrypt = level === top ? timeIt(() => void client.encrypt([vec])) : 0;
    r.decrypt = timeIt(() => void client.decrypt(bytes));
    be.free(a);
    be.free(b);
    be.freePlain(pt);
    return r;
  };
  // V8 first runs SEAL's wasm from its baseline compiler and tiers hot functions up later: in a
  // fresh process the first round of timings came out ~50% slow (rotate 20.6 ms, then 13.0-13.3
  // in the next two rounds at N=8192), so one round is run and thrown away
  measure(top);
  // on a shared host SEAL runs up to ~1.6x slower for seconds to minutes (the probe slows with
  // it): each round is brought to the speed of the first by the probe taken before it
  const probeMs = await speedProbe();
  const hi = measure(top);
  const loProbeMs = await speedProbe();
  const lo = atSpeed(measure(low), probeMs / loProbeMs);
  deleteEvaluationKeys(keys);
  client.delete();
  const ops = {} as Record<OpKind, OpTiming>;
  for (const k of OP_KINDS) {
    if (k === 'encrypt' || top === low) {
      ops[k] = { base: 0, perPrime: hi[k] / (top + 1) };
      continue;
    }
    // the rescale at level 0 does not exist: its bottom point is level 1
    const perPrime = Math.max(0, (hi[k] - lo[k]) / (top - low));
    ops[k] = { base: Math.max(0, hi[k] - perPrime * (top + 1)), perPrime };
  }
  return { key: calibrationKey(p), measuredAt: new Date().toISOString(), ops, probeMs };
}

/**
 * A fused scalar sum of I inputs and O outputs costs I reads + O writes + I*O terms: timed at
 * (I, O) = (48, 16), (48, 1), (1, 16) and (1, 1) and solved for the three. 48 inputs, not 16:
 * a layer's terms stream their inputs from memory, and 16 of them stay in cache (terms timed
 * 2.5x cheaper than a 9,832-term convolution ran).
 */
function sumCosts(be: SealBackend, x: CipherText, level: number): Pick<Record<OpKind, number>, 'sumTerm' | 'sumInput' | 'sumOutput'> {
  const run = (inputs: number, outputs: number) =>
    timeIt(() => {
      const sums = be.scalarSums(level);
      if (!sums) return;
      for (let i = 0; i < inputs; i++) for (let o = 0; o < outputs; o++) sums.add(o, x, 0.37 + o, be.scale, `x${i}`);
      for (const c of sums.finish().values()) be.free(c);
    });
  const { term, input, output } = solveSums(run, 48, 16);
  return { sumTerm: term, sumInput: input, sumOutput: output };
}

/**
 * Per-term, per-input and per-output costs of a fused sum from its times at (I, O), (I, 1),
 * (1, O) and (1, 1) (I inputs, O outputs, I x O terms; the fixed cost cancels).
 */
function solveSums(run: (inputs: number, outputs: number) => number, I: number, O: number): { term: number; input: number; output: number } {
  const [a, b, c, d] = [run(I, O), run(I, 1), run(1, O), run(1, 1)];
  const term = Math.max(0, (a - b - c + d) / ((I - 1) * (O - 1)));
  return { term, input: Math.max(0, (b - d) / (I - 1) - term), output: Math.max(0, (c - d) / (O - 1) - term) };
}

/**
 * Fused pair sums the same way: I operands loaded, O outputs, each output summing I products
 * (x_i x_(i+o mod I)), timed at (I, O) = (4, 4), (4, 1), (1, 4) and (1, 1): a product costs ~100
 * times a scalar term, so 16 of them already take ~100 ms at N=16384. Relinearizing the sums is
 * priced apart (`relinearize`), as the evaluator does it after `finishEach`.
 */
function pairCosts(be: SealBackend, x: CipherText, level: number): Pick<Record<OpKind, number>, 'pairTerm' | 'pairInput' | 'pairOutput'> {
  const run = (inputs: number, outputs: number) =>
    timeIt(() => {
      const sums = be.pairSums(level);
      if (!sums) return;
      for (let i = 0; i < inputs; i++) sums.load(`x${i}`, x);
      for (let o = 0; o < outputs; o++) for (let i = 0; i < inputs; i++) sums.add(o, `x${i}`, `x${(i + o) % inputs}`, false);
      sums.finishEach((_o, c) => be.free(c));
      sums.close();
    });
  const { term, input, output } = solveSums(run, 4, 4);
  return { pairTerm: term, pairInput: input, pairOutput: output };
}

/**
 * A plaintext sum's term: sums of 32 and of 1 distinct plaintexts over 8 loaded inputs, the
 * difference per term (loads and the output's write cancel; they cost as a scalar sum's).
 * Distinct plaintexts, as a convolution's diagonals are: each term streams its own from memory.
 */
function plainCosts(be: SealBackend, x: CipherText, level: number): Pick<Record<OpKind, number>, 'plainTerm'> {
  const vec = Float64Array.from({ length: be.slots }, (_, i) => Math.cos(0.3 * i));
  const plains = Array.from({ length: 32 }, (_, k) => be.encodeResidues(vec.map((v) => v * (k + 1)), be.scale, level));
  if (plains.some((p) => !p)) return { plainTerm: 0 };
  const run = (terms: number) =>
    timeIt(() => {
      const sums = be.plainSums(level)!;
      for (let i = 0; i < 8; i++) sums.load(`x${i}`, x);
      be.free(sums.sum(plains.slice(0, terms).map((p, k) => ({ key: `x${k % 8}`, p: p! }))));
      sums.close();
    });
  return { plainTerm: Math.max(0, (run(32) - run(1)) / 31) };
}

function atSpeed(r: Record<OpKind, number>, f: number): Record<OpKind, number> {
  return Object.fromEntries(Object.entries(r).map(([k, ms]) => [k, ms * f])) as Record<OpKind, number>;
}
