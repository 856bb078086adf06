import type { HeParams } from '../params.js';
import { RING_DEGREES } from '../params.js';
import type { HeProgram } from '../program.js';
import { type SamplePlan, clientPlan } from '../packing/sample.js';
import { PACKINGS, type Packing, type PackingKind, type PackingPlan, planName } from '../packing/index.js';
import { samplePacking } from '../packing/sample-packing.js';
import { GALOIS_KEY_BUDGET } from '../client.js';
import { HepolyError } from '../../util/errors.js';
import type { Calibration } from './calibrate.js';
import { KEY_LOAD_PEAK, type PassCost, type PassShape, type Prediction, passCost, predict } from './cost.js';
import type { StackedProgram } from './stacked.js';
import type { TileLayout } from './tile-tensor.js';
import { fmtGiB } from '../../util/format.js';

/**
 * The packing search: for the smallest ring that holds the program and the next one, batch
 * packing, sample packing, stacked packing with 2, 4, 8... samples per ciphertext (in blocks)
 * and interleaved packing with 2, 4, 8... samples innermost (the tile points between sample
 * packing, m = 1, and batch packing, m = slots; a CNN's image plane bounds m); each candidate costed
 * by a dry run of its evaluator and ranked for a goal under a memory limit.
 */

export type Goal = 'latency' | 'throughput' | 'memory';
export const GOALS: Goal[] = ['latency', 'throughput', 'memory'];

export interface Candidate {
  name: string;
  kind: PackingKind;
  /** stacked and interleaved: its plan is client-only (costed already, diagonals dropped) */
  shape: PassShape;
  /** the input tensor as tiles: [samples, features]; interleaved, [features, samples] */
  tiles: TileLayout;
  stacked: StackedProgram | null;
  cost: PassCost;
}

export interface Ranked extends Candidate {
  prediction: Prediction;
}

/** wasm32's memory limit: no worker's SEAL heap can grow past it */
const WASM_HEAP = 4 * 2 ** 30;

export function candidates(program: HeProgram, base: HeParams, opts: { rings?: number; maxStack?: number } = {}): Candidate[] {
  const out: Candidate[] = [];
  const rings = RING_DEGREES.filter((N) => N >= base.polyModulusDegree).slice(0, opts.rings ?? 2);
  for (const N of rings) {
    const params = N === base.polyModulusDegree ? base : sameChain(base, N);
    out.push(...packingCandidates(program, params, { maxM: opts.maxStack, suffix: ` N=${N}` }));
  }
  return out;
}

/**
 * A larger ring with the base chain unchanged (same primes, scale and headroom, so the same
 * values fit): more slots, and a larger ring is only more secure for the same modulus.
 */
function sameChain(base: HeParams, N: number): HeParams {
  return { ...base, polyModulusDegree: N };
}

export interface SearchOptions {
  /** the packings to try (default: every registered one) */
  kinds?: readonly PackingKind[];
  /** most samples per pass for the M-sample packings */
  maxM?: number;
  /** the M-sample packings stop at the first M whose predicted worker heap passes this */
  heapCap?: number;
  /** the one-sample plan, already made (and its Galois keys checked) by the caller */
  single?: SamplePlan;
  /** batch: server threads its channel groups are split for */
  workers?: number;
  /** appended to every candidate's name (he-plan: the ring) */
  suffix?: string;
}

/**
 * Every registered packing's points at the ring of `params`, each costed by a dry run of its
 * evaluator: for each packing its sizes in ascending order (batch: the slots; sample: 1;
 * stacked and interleaved: M = 2, 4, ...), stopping at the first that cannot be planned, given
 * Galois keys or (M-sample packings, whose heap grows with M) held under the heap cap. The
 * packings evaluated by the sample evaluator all need a one-sample plan: without one, none of
 * them is tried.
 */
export function packingCandidates(program: HeProgram, params: HeParams, opts: SearchOptions = {}): Candidate[] {
  const slots = params.polyModulusDegree / 2;
  const heapCap = Math.min(opts.heapCap ?? WASM_HEAP, WASM_HEAP);
  const single = opts.single ?? tryPlan(samplePacking, program, slots, 1)?.sample ?? null;
  const out: Candidate[] = [];
  for (const pk of PACKINGS) {
    if (opts.kinds && !opts.kinds.includes(pk.kind)) continue;
    if (pk.evaluator === 'sample' && !single) continue;
    for (const m of pk.sizes(program, slots, opts.maxM ?? Infinity)) {
      // the one-sample plan is made once: it decides whether the sample evaluator runs at all
      const plan = pk === samplePacking ? planWith(program, slots, single!) : tryPlan(pk, program, slots, m);
      const keysChecked = pk === samplePacking && !!opts.single;
      if (!plan || (!keysChecked && !fitsKeys(params, plan.rotationSteps.length))) break;
      const shape: PassShape = { kind: pk.kind, params, program: plan.program, plan: plan.sample, samplesPerPass: plan.samplesPerPass, ...(pk.evaluator === 'batch' && opts.workers ? { workers: opts.workers } : {}) };
      const cost = passCost(shape);
      if (pk.heapGrowsWithM && KEY_LOAD_PEAK * cost.keyBytes + cost.poolBytes > heapCap) break;
      // an M-sample plan keeps only what the client needs: dozens of candidates' diagonals would stay in memory
      const kept = pk.heapGrowsWithM && plan.sample ? { ...shape, plan: clientPlan(plan.sample) } : shape;
      out.push({ name: `${planName(plan)}${opts.suffix ?? ''}`, kind: pk.kind, shape: kept, tiles: pk.tiles(plan), stacked: plan.stacked, cost });
    }
  }
  return out;
}

/** The sample packing's plan around a one-sample plan already made. */
function planWith(program: HeProgram, slots: number, sample: SamplePlan): PackingPlan {
  return { kind: 'sample', program, slots, samplesPerPass: 1, sample, stacked: null, rotationSteps: sample.rotationSteps };
}

function tryPlan(pk: Packing, p: HeProgram, slots: number, m: number): PackingPlan | null {
  try {
    return pk.plan(p, slots, m);
  } catch (e) {
    if (e instanceof HepolyError) return null;
    throw e;
  }
}

function fitsKeys(params: HeParams, steps: number): boolean {
  const primes = params.coeffModulusBits.length;
  return steps * (primes - 1) * 2 * primes * params.polyModulusDegree * 8 <= GALOIS_KEY_BUDGET;
}

export function parseGoal(v: string | undefined): Goal {
  const g = (v ?? 'latency') as Goal;
  if (!GOALS.includes(g)) throw new HepolyError(`--goal: expected latency, throughput or memory, found ${JSON.stringify(v)}. Use --goal latency (one sample's time), throughput (time per sample) or memory (smallest peak)`);
  return g;
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 2 ** 10, kb: 1e3, kib: 2 ** 10, m: 2 ** 20, mb: 1e6, mib: 2 ** 20, g: 2 ** 30, gb: 1e9, gib: 2 ** 30, t: 2 ** 40, tb: 1e12, tib: 2 ** 40 };

/** "8GiB", "512MB", "1.5g", "4000000000" -> bytes. */
export function parseMemory(v: string | number | undefined, fallback = 8 * 2 ** 30, flag = '--memory'): number {
  if (v === undefined) return fallback;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(String(v));
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined || !(Number(m[1]) > 0)) {
    throw new HepolyError(`${flag}: cannot read ${JSON.stringify(String(v))}. Use a positive number with an optional unit, e.g. ${flag} 8GiB, 512MiB or 2GB`, { exitCode: 2 });
  }
  return Number(m[1]) * unit;
}

function score(goal: Goal, p: Prediction): number {
  if (goal === 'latency') return p.latencyMs;
  if (goal === 'throughput') return p.amortizedMs;
  return p.memoryBytes;
}

/** Candidates under the memory limit, best first for the goal. */
export function rank(cands: Candidate[], calib: (p: HeParams) => Calibration, goal: Goal, memoryLimit: number): Ranked[] {
  const all: Ranked[] = cands.map((c) => ({ ...c, prediction: predict(c.shape, c.cost, calib(c.shape.params)) }));
  const fit = all.filter((c) => c.prediction.memoryBytes <= memoryLimit);
  if (!fit.length) {
    const least = Math.min(...all.map((c) => c.prediction.memoryBytes));
    throw new HepolyError(
      `--memory ${fmtGiB(memoryLimit)}: no packing fits; the smallest (${all.find((c) => c.prediction.memoryBytes === least)?.name}) needs ${fmtGiB(least)}. Raise --memory to at least ${fmtGiB(least)}`,
    );
  }
  return fit.sort((a, b) => score(goal, a.prediction) - score(goal, b.prediction) || a.prediction.latencyMs - b.prediction.latencyMs);
}

