import type { HeParams } from '../params.js';
import { RING_DEGREES } from '../params.js';
import type { HeProgram } from '../program.js';
import { clientPlan, planSample } from '../packing/sample.js';
import { nextPow2 } from '../packing/layout.js';
import { GALOIS_KEY_BUDGET } from '../client.js';
import { HepolyError } from '../../util/errors.js';
import type { Calibration } from './calibrate.js';
import { KEY_LOAD_PEAK, type PassCost, type PassShape, type Prediction, passCost, predict } from './cost.js';
import { type StackOrder, type StackedProgram, stackForSlots } from './stacked.js';
import { type TileLayout, batchTiles, interleavedTiles, sampleTiles, stackedTiles, tileLayout } from './tile-tensor.js';

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

const MAX_STACK_VECTOR = 64;
const MAX_INTERLEAVE = 256;
/** wasm32's memory limit: no worker's SEAL heap can grow past it */
const WASM_HEAP = 4 * 2 ** 30;
const MAX_STACK_IMAGE = 8;

export function candidates(program: HeProgram, base: HeParams, opts: { rings?: number; maxStack?: number } = {}): Candidate[] {
  const out: Candidate[] = [];
  const rings = RING_DEGREES.filter((N) => N >= base.polyModulusDegree).slice(0, opts.rings ?? 2);
  for (const N of rings) out.push(...candidatesAtRing(program, N === base.polyModulusDegree ? base : sameChain(base, N), opts.maxStack));
  return out;
}

/**
 * A larger ring with the base chain unchanged (same primes, scale and headroom, so the same
 * values fit): more slots, and a larger ring is only more secure for the same modulus.
 */
function sameChain(base: HeParams, N: number): HeParams {
  return { ...base, polyModulusDegree: N };
}

function candidatesAtRing(program: HeProgram, params: HeParams, maxStack = Infinity): Candidate[] {
  const slots = params.polyModulusDegree / 2;
  const features = program.inputShape.reduce((a, b) => a * b, 1);
  const ring = `N=${params.polyModulusDegree}`;
  const out: Candidate[] = [];
  const batch: PassShape = { kind: 'batch', params, program, plan: null, samplesPerPass: slots };
  out.push({ name: `batch ${ring}`, shape: batch, tiles: batchTiles(slots, features, slots), stacked: null, cost: passCost(batch) });
  const image = program.inputShape.length === 3;
  const single = tryPlan(program, slots);
  if (!single) return out;
  const shape: PassShape = { kind: 'sample', params, program, plan: single, samplesPerPass: 1 };
  const inputTiles = image ? tileLayout([1, features], [1, slots]) : sampleTiles(features, slots);
  if (fitsKeys(params, single.rotationSteps.length)) out.push({ name: `sample ${ring}`, shape, tiles: inputTiles, stacked: null, cost: passCost(shape) });
  out.push(...stackedCandidates(program, params, maxStack));
  out.push(...interleavedCandidates(program, params, maxStack));
  return out;
}

/**
 * Interleaved points at the ring of `params`: m = 2, 4, ... samples
 * innermost, up to `maxM` and MAX_INTERLEAVE, and only while a worker's predicted SEAL heap
 * (which grows with m: more diagonals to keep encoded) stays under wasm's 4 GiB. m = slots
 * would be batch packing, which the batch evaluator runs without storing plaintexts.
 */
export function interleavedCandidates(program: HeProgram, params: HeParams, maxM = Infinity, heapCap = WASM_HEAP): Candidate[] {
  const slots = params.polyModulusDegree / 2;
  return multiSampleCandidates(program, params, 'interleave', Math.min(maxM, MAX_INTERLEAVE, slots / 2), Math.min(heapCap, WASM_HEAP));
}

/**
 * Stacked points at the ring of `params`, 2, 4, 8... samples per ciphertext, up to `maxStack`,
 * while a worker's predicted SEAL heap stays under `heapCap` (the heap grows with M, and
 * planning a stacked CNN at M = 8 alone builds ~30M kernel entries).
 */
export function stackedCandidates(program: HeProgram, params: HeParams, maxStack = Infinity, heapCap = WASM_HEAP): Candidate[] {
  const slots = params.polyModulusDegree / 2;
  const features = program.inputShape.reduce((a, b) => a * b, 1);
  const image = program.inputShape.length === 3;
  return multiSampleCandidates(program, params, 'block', Math.min(maxStack, image ? MAX_STACK_IMAGE : Math.min(MAX_STACK_VECTOR, slots / nextPow2(features))), Math.min(heapCap, WASM_HEAP));
}

/**
 * m = 2, 4, ... up to `limit` samples per pass in `order`, each costed by a dry run; the
 * search stops at the first m that cannot be stacked, planned, given Galois keys or (its
 * predicted worker heap) held under `heapCap`.
 */
function multiSampleCandidates(program: HeProgram, params: HeParams, order: StackOrder, limit: number, heapCap = Infinity): Candidate[] {
  const slots = params.polyModulusDegree / 2;
  const features = program.inputShape.reduce((a, b) => a * b, 1);
  const out: Candidate[] = [];
  if ((program.refreshes ?? []).length) return out;
  for (let m = 2; m <= limit; m *= 2) {
    let sp: StackedProgram;
    try {
      sp = stackForSlots(program, m, slots, order);
    } catch (e) {
      if (e instanceof HepolyError) break;
      throw e;
    }
    const plan = tryPlan(sp.program, slots);
    if (!plan || !fitsKeys(params, plan.rotationSteps.length)) break;
    const st: PassShape = { kind: 'stacked', params, program: sp.program, plan, samplesPerPass: m };
    const cost = passCost(st);
    if (KEY_LOAD_PEAK * cost.keyBytes + cost.poolBytes > heapCap) break;
    const interleave = order === 'interleave';
    out.push({
      name: `${interleave ? 'interleaved' : 'stacked'} x${m} N=${params.polyModulusDegree}`,
      shape: { ...st, plan: clientPlan(plan) },
      tiles: interleave ? interleavedTiles(features, slots, m) : stackedTiles(m, features, slots, m),
      stacked: sp,
      cost,
    });
  }
  return out;
}

function tryPlan(p: HeProgram, slots: number) {
  try {
    return planSample(p, slots);
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
export function parseMemory(v: string | number | undefined, fallback = 8 * 2 ** 30): number {
  if (v === undefined) return fallback;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(String(v));
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined || !(Number(m[1]) > 0)) {
    throw new HepolyError(`--memory: cannot read ${JSON.stringify(String(v))}. Use a positive number with an optional unit, e.g. --memory 8GiB, 512MiB or 2GB`);
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

export function fmtGiB(b: number): string {
  return b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`;
}
