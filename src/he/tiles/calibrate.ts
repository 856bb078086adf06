import { existsSync, readFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { HEClient } from '../client.js';
import { loadEvaluationKeys, deleteEvaluationKeys } from '../keys.js';
import { SealBackend } from '../seal-backend.js';
import type { CipherText, PlainText } from '../seal.js';
import type { HeParams } from '../params.js';
import { writeFileAtomic } from '../../util/atomic-file.js';
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
 * A fixed piece of single-thread work, timed when the operations are and again whenever the
 * cache is read: on shared cores the same operations run slower or faster with the load, and
 * the ratio of the two probe times carries a calibration over to the load of now.
 */
export function speedProbe(): number {
  // ~150 ms in all: long enough to span many scheduler slices, so it sees the share of a core
  // this process gets (a min over short runs would find an uncontended slice and miss the load)
  const t0 = performance.now();
  let h = 0x9e3779b9;
  const buf = new Float64Array(4096);
  for (let i = 0; i < 120_000_000; i++) {
    h = Math.imul(h ^ (h >>> 15), 0x85ebca6b) >>> 0;
    buf[i & 4095] += h * 1e-9;
  }
  const ms = performance.now() - t0;
  return buf[7] === -1 ? ms + 1 : ms; // the read keeps the loop from being optimized away
}

/** One probe serves every calibration read within this window (a plan reads one per ring). */
const PROBE_REUSE_MS = 30_000;
let lastProbe: { at: number; ms: number } | null = null;

function probeNow(): number {
  const now = performance.now();
  if (!lastProbe || now - lastProbe.at > PROBE_REUSE_MS) lastProbe = { at: now, ms: speedProbe() };
  return lastProbe.ms;
}

/** The calibration with every time scaled by how much slower (or faster) this machine runs now. */
export function atCurrentSpeed(c: Calibration, probeMs = probeNow()): Calibration {
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

export function calibrationKey(p: HeParams): string {
  return `N=${p.polyModulusDegree} q=${p.coeffModulusBits.join(',')} node=${process.version} cpu=${cpus()[0]?.model ?? '?'}`;
}

export function defaultCachePath(): string {
  return process.env.HEPOLY_CALIBRATION ?? join(tmpdir(), 'hepoly-he-calibration.json');
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
  if (!opts.force && cache[key]?.probeMs) return atCurrentSpeed(cache[key]);
  opts.log?.(`calibrating node-seal operations at N=${p.polyModulusDegree} (cached in ${path})`);
  const c = await microBenchmark(p);
  writeFileAtomic(path, JSON.stringify({ ...readCache(path), [key]: c }, null, 1));
  return c;
}

/** Mean ms of fn over enough repetitions to fill `budgetMs` (at least 3). */
function timeIt(fn: () => void, budgetMs = 120): number {
  fn(); // warm-up: first calls allocate SEAL's memory pool
  let reps = 0;
  const t0 = performance.now();
  while (reps < 3 || performance.now() - t0 < budgetMs) {
    fn();
    reps++;
    if (reps >= 400) break;
  }
  return (performance.now() - t0) / reps;
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
  const hi = measure(top);
  const lo = measure(low);
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
  return { key: calibrationKey(p), measuredAt: new Date().toISOString(), ops, probeMs: speedProbe() };
}
