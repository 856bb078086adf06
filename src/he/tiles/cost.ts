import type { OpCounts } from '../backend.js';
import type { HeParams } from '../params.js';
import type { HeProgram } from '../program.js';
import { GALOIS_KEY_BUDGET, galoisKeyBytes, normalizeSteps } from '../client.js';
import { SampleEvaluator, type SamplePlan, planSample } from '../packing/sample.js';
import { type PackingKind, type PackingPlan, packingOf } from '../packing/index.js';
import { size } from '../tensor-ops.js';
import { type Calibration, opMs } from './calibrate.js';
import { type DryCt, OP_KINDS, type OpKind, dryBackend } from './dry-run.js';
import { programSegments } from '../refresh.js';
import { runBatchGrouped } from './batch-pass.js';

/**
 * The cost of one evaluation pass of a packing: operation counts (those of the evaluator
 * itself, from a dry run), then time from the calibrated per-operation costs at the level
 * each operation runs at, and memory from the peak of live ciphertexts and plaintexts plus the
 * evaluation keys.
 */

export type { PackingKind } from '../packing/index.js';

export interface PassShape {
  kind: PackingKind;
  params: HeParams;
  /** the program the evaluator runs (stacked: the m-sample program) */
  program: HeProgram;
  /** sample/stacked: the sample-packing plan of `program` */
  plan: SamplePlan | null;
  /** samples one pass serves */
  samplesPerPass: number;
  /** batch: the server threads its channel groups are split for (default 1) */
  workers?: number;
}

export interface PassCost {
  counts: OpCounts;
  /** ops[kind][level] for one pass, client encrypt/decrypt included */
  ops: Record<OpKind, number[]>;
  /** ops spent once per model (encoding the diagonals) */
  setupOps: Record<OpKind, number[]>;
  inputCiphertexts: number;
  outputCiphertexts: number;
  /** peak bytes of ciphertexts and plaintexts live at once during the pass */
  workingBytes: number;
  /** what SEAL's heap keeps for them: each allocation size's own peak (see DryTally.poolBytes) */
  poolBytes: number;
  keyBytes: number;
  rotationKeys: number;
}

export function passCost(s: PassShape): PassCost {
  const { be, dry, counts } = dryBackend(s.params);
  const inputCiphertexts = s.plan ? s.plan.layouts[s.program.input]!.cts : size(s.program.inputShape);
  const cut = !!s.program.refreshes?.length;
  const { outputs, setupOps } = cut && s.plan ? segmentedPass(s.program, s.plan, be, dry) : cut ? batchSegments(s, be, dry, inputCiphertexts) : wholePass(s, be, dry, inputCiphertexts);
  let outputCiphertexts = 0;
  for (const c of outputs) {
    if (!c) continue;
    dry.output(c);
    be.free(c);
    outputCiphertexts++;
  }
  const steps = s.plan ? normalizeSteps(s.plan.rotationSteps, s.params.polyModulusDegree / 2).length : 0;
  return {
    counts: { ...counts },
    ops: snapshot(dry.tally.ops),
    setupOps,
    inputCiphertexts,
    outputCiphertexts,
    workingBytes: dry.tally.peakBytes,
    poolBytes: dry.tally.poolBytes,
    keyBytes: evaluationKeyBytes(s.params, steps),
    rotationKeys: steps,
  };
}

type Dry = ReturnType<typeof dryBackend>;

/** One pass of the packing's evaluator; setting it up (encoding diagonals) is once per model, not per pass. */
function wholePass(s: PassShape, be: Dry['be'], dry: Dry['dry'], inputCiphertexts: number): { outputs: (DryCt | null)[]; setupOps: Record<OpKind, number[]> } {
  const runner = packingOf(s.kind).run(planOfShape(s), be, { workers: s.workers });
  const setupOps = snapshot(dry.tally.ops);
  for (const k of OP_KINDS) dry.tally.ops[k].fill(0);
  const inputs = Array.from({ length: inputCiphertexts }, () => dry.input());
  const outputs: (DryCt | null)[] = runner.run(inputs);
  // batch passes hand their inputs over to the stages, which free them
  if (s.plan) for (const c of inputs) be.free(c);
  return { outputs, setupOps };
}

/**
 * A program cut for client refreshes, segment by segment as the server's workers run it, each
 * segment's inputs fresh at the top level (the client re-encrypted them; the client's own
 * decrypt and encrypt are outside the server's pass). Each segment's diagonals are encoded
 * before it: setup, not pass.
 */
function segmentedPass(program: HeProgram, plan: SamplePlan, be: Dry['be'], dry: Dry['dry']): { outputs: (DryCt | null)[]; setupOps: Record<OpKind, number[]> } {
  const ev = new SampleEvaluator(program, plan, be);
  const setupOps = snapshot(dry.tally.ops);
  let outputs: DryCt[] = [];
  for (const seg of programSegments(program)) {
    const before = snapshot(dry.tally.ops);
    ev.prepareRange(seg.from, seg.to);
    for (const k of OP_KINDS) dry.tally.ops[k].forEach((n, l) => ((setupOps[k][l] += n - before[k][l]), (dry.tally.ops[k][l] = before[k][l])));
    const given = new Map(seg.inputs.map((t) => [t, Array.from({ length: plan.layouts[t]!.cts }, () => dry.input())]));
    const kept = ev.runRange(given, seg.from, seg.to, seg.outputs);
    for (const cts of given.values()) for (const c of cts) be.free(c);
    for (const [t, cts] of kept) {
      if (t === program.output) outputs = cts;
      else for (const c of cts) be.free(c);
    }
  }
  ev.delete();
  return { outputs, setupOps };
}

/** A batch pass of a program cut for client refreshes: the refreshed tensors come back fresh at the top level. */
function batchSegments(s: PassShape, be: Dry['be'], dry: Dry['dry'], inputCiphertexts: number): { outputs: (DryCt | null)[]; setupOps: Record<OpKind, number[]> } {
  const setupOps = snapshot(dry.tally.ops);
  const inputs = Array.from({ length: inputCiphertexts }, () => dry.input());
  const refresh = (cts: (DryCt | null)[]) => cts.map((c) => (c ? dry.input() : null));
  return { outputs: runBatchGrouped(s.program, be, inputs, { workers: s.workers ?? 1, N: s.params.polyModulusDegree, refresh }), setupOps };
}

/** The packing plan a pass shape describes (the cost model keeps its own, smaller record). */
function planOfShape(s: PassShape): PackingPlan {
  const slots = s.params.polyModulusDegree / 2;
  return { kind: s.kind, program: s.program, slots, samplesPerPass: s.samplesPerPass, sample: s.plan, stacked: null, rotationSteps: s.plan?.rotationSteps ?? [] };
}

function snapshot(ops: Record<OpKind, number[]>): Record<OpKind, number[]> {
  return Object.fromEntries(OP_KINDS.map((k) => [k, [...ops[k]]])) as Record<OpKind, number[]>;
}

/** Public key, relinearization key and one Galois key per rotation step, as SEAL holds them. */
export function evaluationKeyBytes(p: HeParams, rotationKeys: number): number {
  const primes = p.coeffModulusBits.length;
  const N = p.polyModulusDegree;
  const publicKey = 2 * primes * N * 8;
  return publicKey + galoisKeyBytes(p, rotationKeys + 1);
}

export function opsMs(c: Calibration, ops: Record<OpKind, number[]>): number {
  let ms = 0;
  for (const k of OP_KINDS) ops[k].forEach((n, level) => (ms += n ? n * opMs(c, k, level) : 0));
  return ms;
}

/**
 * Loading keys from their (compressed, seeded) bytes holds the serialized copy, the expanded
 * one and the key objects at once, and the wasm heap never shrinks from that high-water mark.
 * Fitted with the pool model of the ciphertexts (memory = this x keys + pools) to he-plan
 * --measure on quickstart and fmnist-mlp (14 candidates: sample, stacked x2-x8 and batch, N =
 * 8192 and 16384; 2026-11-28): measured/predicted 0.76-1.19.
 */
export const KEY_LOAD_PEAK = 2.25;

export interface Prediction {
  /** one pass: encrypt, evaluate, decrypt, on one thread */
  latencyMs: number;
  amortizedMs: number;
  setupMs: number;
  memoryBytes: number;
}

export function predict(s: PassShape, cost: PassCost, c: Calibration): Prediction {
  const latencyMs = opsMs(c, cost.ops);
  return {
    latencyMs,
    amortizedMs: latencyMs / s.samplesPerPass,
    setupMs: opsMs(c, cost.setupOps),
    // the key-loading high-water mark stays in the heap (pools never shrink) and ciphertexts come
    // in other sizes, so the two add up
    memoryBytes: KEY_LOAD_PEAK * cost.keyBytes + cost.poolBytes,
  };
}

/**
 * The SEAL heap of one server worker running a program cut for client refreshes with sample
 * packing: segment after segment, each with its own diagonals encoded (those of the previous
 * segment freed), inputs fresh at the top level. Same model as `predict`: pools plus keys.
 */
export function refreshedSampleMemory(program: HeProgram, plan: SamplePlan, params: HeParams): number {
  const { be, dry } = dryBackend(params);
  const ev = new SampleEvaluator(program, plan, be);
  for (const seg of programSegments(program)) {
    const given = new Map(seg.inputs.map((t) => [t, Array.from({ length: plan.layouts[t]!.cts }, () => dry.input())]));
    const kept = ev.runRange(given, seg.from, seg.to, seg.outputs);
    for (const cts of kept.values()) for (const c of cts) if (c) be.free(c);
    for (const cts of given.values()) for (const c of cts) be.free(c);
  }
  const steps = normalizeSteps(plan.rotationSteps, params.polyModulusDegree / 2).length;
  return KEY_LOAD_PEAK * evaluationKeyBytes(params, steps) + dry.tally.poolBytes;
}


/** wasm32's memory limit, which caps every SEAL instance's heap */
export const WASM_HEAP_MAX = 4 * 2 ** 30;

/**
 * Whether one server worker can run a program cut for client refreshes, sample packed, at
 * these parameters: its plan, or why not: `keys` (the Galois keys pass the heap's key budget;
 * fewer levels at the ring do not help) or `heap` (the memory model puts the segments past the
 * wasm32 cap, which would end in std::bad_alloc; fewer levels may fit). he-validate's and
 * export's ring searches both ask it. Throws a HepolyError when no sample plan exists.
 */
export function sampleCutFit(program: HeProgram, params: HeParams): { plan: SamplePlan } | { refused: 'keys' | 'heap' } {
  const slots = params.polyModulusDegree / 2;
  const plan = planSample(program, slots);
  if (galoisKeyBytes(params, normalizeSteps(plan.rotationSteps, slots).length) > GALOIS_KEY_BUDGET) return { refused: 'keys' };
  if (refreshedSampleMemory(program, plan, params) > WASM_HEAP_MAX) return { refused: 'heap' };
  return { plan };
}
