import * as tf from '@tensorflow/tfjs-core';
import { reportProgress } from '../util/progress-event.js';
import { availableParallelism } from 'node:os';
import { loadCheckpoint, trainingStatus, type Checkpoint } from '../train/checkpoint.js';
import { heldOutSplit, toParams } from '../train/evaluate.js';
import { compareLogits } from './compare.js';
import { initBackend } from '../train/backend.js';
import { forward } from '../models/tf-interpreter.js';
import { HepolyError } from '../util/errors.js';
import { checkTeamSize } from './team.js';
import { compileCheckpoint } from './compile.js';
import { programForward } from './reference.js';
import { type HeProgram, type LayerBudget, encodeSample, encodeSamples } from './program.js';
import {
  type HeParams,
  type ParamsSummary,
  checkParams,
  chooseParams,
  MAX_USEFUL_SCALE_BITS,
  MIN_SCALE_BITS,
  describeParams,
  levelsOf,
  loadParamsFile,
  summarize,
} from './params.js';
import { type RefreshChannel, type RefreshSummary, refreshPointName } from './refresh.js';
import { RefreshWatch } from './refresh-watch.js';
import { coreReportJson } from './report-json.js';
import { HEClient, GALOIS_KEY_BUDGET, galoisKeyBytes, normalizeSteps } from './client.js';
import { type ClientLike, SimClient } from './sim-client.js';
import { HEServer } from './server.js';
import type { RefreshPool } from './refresh-pool.js';
import type { LatencyPart } from './latency-breakdown.js';
import { type OpCounts, zeroCounts } from './backend.js';
import { type SamplePlan, planSample, unpackTensor } from './packing/sample.js';
import { weightedEntries } from './linear-map.js';
import { nextPow2 } from './packing/layout.js';
import { size } from './tensor-ops.js';
import { type ServerPacking, chooseServerPacking, predictSeconds } from './tiles/choose.js';
import { type PackingPlan, packingOf } from './packing/index.js';
import { tokenFoldProblem } from './packing/token-fold.js';
import { type StackedProgram, stackForSlots, unstackTensor } from './tiles/stacked.js';
import { sampleCutFit } from './tiles/cost.js';
import { cutToParams, ringCuts } from './passes/segment-refresh.js';
import { queuePacking, startQueueRun, type QueueOptions, type QueueStats } from '../queue/validate-hook.js';
import type { QueueServer } from '../queue/server.js';

/** --packing auto, stacked or interleaved: the most SEAL heap the memory model may predict for a multi-sample pass (it is within 25%; the rest is the worker's margin) */
const MULTI_SAMPLE_HEAP_LIMIT = 3 * 2 ** 30;

/** Why a sample plan's Galois keys cannot be loaded, or null. */
function galoisKeyProblem(params: HeParams, plan: SamplePlan): string | null {
  const slots = params.polyModulusDegree / 2;
  const keyBytes = galoisKeyBytes(params, normalizeSteps(plan.rotationSteps, slots).length);
  if (keyBytes <= GALOIS_KEY_BUDGET) return null;
  return `its ${plan.rotationSteps.length} rotation steps need ${fmtBytes(keyBytes)} of Galois keys at N=${params.polyModulusDegree}, more than the ${fmtBytes(GALOIS_KEY_BUDGET)} SEAL's wasm heap holds safely`;
}

/**
 * `hepoly he-validate`: the same held-out samples through the plaintext model and through
 * encrypt (client) -> evaluate on ciphertexts (server workers) -> decrypt (client), and a typed
 * report of how far apart they are, what it cost and with which parameters.
 */

export type PackingChoice = 'auto' | 'batch' | 'sample' | 'token' | 'stacked' | `stacked:${number}` | 'interleaved' | `interleaved:${number}`;

/** `--packing`: auto, batch, sample, stacked or interleaved (M by the cost model), stacked:M or interleaved:M. */
export function parsePacking(v: string | undefined): { kind: 'auto' | 'batch' | 'sample' | 'token' | 'stacked' | 'interleaved'; m: number | null } {
  const s = v ?? 'auto';
  if (s === 'auto' || s === 'batch' || s === 'sample' || s === 'token' || s === 'stacked' || s === 'interleaved') return { kind: s, m: null };
  const m = /^(stacked|interleaved):(\d+)$/.exec(s);
  if (m && Number(m[2]) >= 2) return { kind: m[1] as 'stacked' | 'interleaved', m: Number(m[2]) };
  throw new HepolyError(
    `--packing: expected auto, batch, sample, token, stacked, interleaved, stacked:M or interleaved:M (M >= 2 samples per ciphertext), found ${JSON.stringify(s)}. Use --packing stacked or interleaved to let the cost model choose M`,
  );
}

export interface ValidateOptions {
  checkpoint: string;
  /** number of held-out samples; 'all' or 0 for the whole split */
  samples?: number | 'all';
  packing?: PackingChoice;
  /** 'auto' or a JSON file */
  params?: string;
  /** --params auto: at least this scale (bits); more precision, maybe a larger ring */
  scaleBits?: number;
  /** decrypt every layer's output and compare (debug only: the client sees intermediates) */
  trace?: boolean;
  mode?: 'encrypt' | 'simulate';
  workers?: number;
  /**
   * sample packing: worker threads that evaluate each sample together (teams, src/he/team.ts):
   * lower latency per sample for the same total work. Default 1.
   */
  workersPerSample?: number;
  /** 'client': where the chain runs out of levels, the client decrypts and re-encrypts (interactive) */
  refresh?: 'none' | 'client';
  log?: (line: string) => void;
  /** the folder the checkpoint's relative data paths are read from (--data) */
  data?: string;
  /** --queue: shards go to `hepoly worker`s through BullMQ on Redis (src/queue/) */
  queue?: QueueOptions;
}

export interface LayerError {
  tensor: number;
  label: string;
  level: number;
  scaleBits: number;
  maxAbsError: number;
  maxAbsValue: number;
}

export interface OutOfRange {
  /** samples with at least one input value outside ranges.json's observed [min, max] */
  inputSamples: number;
  inputValues: number;
  /** samples with at least one activation input outside its trained range */
  activationSamples: number;
  perActivation: Record<string, number>;
  /** false when the checkpoint has no ranges.json */
  checked: boolean;
}

export interface ValidationReport {
  checkpoint: string;
  training: { trained_epochs: number; planned_epochs: number; complete: boolean };
  split: 'test' | 'validation';
  samples: number;
  mode: 'encrypt' | 'simulate';
  /** batch, sample, "stacked xM" or "interleaved xM" */
  packing: string;
  packingReason: string;
  /** samples one pass serves: batch, up to the slot count; sample, 1; stacked or interleaved, M */
  samplesPerPass: number;
  params: ParamsSummary;
  paramsSource: string;
  depth: number;
  layers: LayerBudget[];
  plaintextAccuracy: number;
  encryptedAccuracy: number;
  agreement: number;
  disagreements: number;
  /** the first disagreeing samples, with the plaintext gap between their two top logits */
  disagreementSamples: { index: number; plaintextGap: number }[];
  /** disagreements explained by CKKS noise (see LogitComparison.nearTies) */
  nearTies: number;
  agreeingMaxError: number;
  maxAbsError: number;
  meanAbsError: number;
  logitRange: number;
  relativeError: number;
  layerErrors: LayerError[] | null;
  timings: { keygenMs: number; serverSetupMs: number; encryptMs: number; evaluateMs: number; decryptMs: number; totalMs: number };
  latencyMsPerSample: number;
  amortizedMsPerSample: number;
  bytes: { keys: number; clientToServer: number; serverToClient: number };
  ciphertexts: { input: number; output: number; perPass: number };
  ops: OpCounts;
  rotationKeys: number;
  peakRssMb: number;
  /** sum over worker threads of their SEAL wasm heap (each is capped at 4 GiB by wasm32) */
  workerHeapMb: number;
  workers: number;
  /** threads per sample (--workers-per-sample): 1, or a team of that many on each sample */
  workersPerSample: number;
  outOfRange: OutOfRange;
  /** the cost model's prediction of this run under SEAL (null in simulate mode: it would calibrate SEAL, seconds to minutes, for a run that takes seconds) */
  estimatedSeconds: { batch: number; sample: number | null } | null;
  /** --refresh client: the interactive re-encryptions this run needed (null: none allowed) */
  refreshes: RefreshSummary | null;
  /** --queue: shards, per-worker counts and queue overhead */
  queue?: QueueStats;
  /** batch packing: the evaluation time by component (empty for the other packings and the queue) */
  latencyBreakdown: LatencyPart[];
}

const noop = () => {};

/** `--mode`: encrypt (SEAL) or simulate (float64 with the same schedule). */
export function parseMode(mode: string | undefined): 'encrypt' | 'simulate' {
  const m = mode ?? 'encrypt';
  if (m !== 'encrypt' && m !== 'simulate') throw new HepolyError(`--mode: expected encrypt or simulate, found ${JSON.stringify(m)}`);
  return m;
}

export async function validate(opts: ValidateOptions): Promise<ValidationReport> {
  const log = opts.log ?? noop;
  const t0 = performance.now();
  const checked = checkOptions(opts);
  const ckpt = loadCheckpoint(opts.checkpoint);
  const training = trainingStatus(ckpt);
  if (training.note) log(training.note);
  const compiled = compileCheckpoint(ckpt);
  await initBackend();
  const inputs = await heldOutInputs(ckpt, compiled, opts);
  const rssPeak = trackRss();
  const workers = Math.max(1, opts.workers ?? availableParallelism());
  const chosen = await chooseParameters(ckpt, compiled, inputs, checked, opts, workers);
  const layout = await choosePacking(ckpt, chosen, inputs.n, checked.packingSpec, workers, checked.mode);
  if (checked.workersPerSample > 1 && layout.evaluator !== 'sample') {
    throw new HepolyError(`--workers-per-sample ${checked.workersPerSample}: only sample packing splits one sample over several workers, and this run chose ${layout.packed.kind} packing. Add --packing sample, or leave the flag out.`, { exitCode: 2 });
  }
  logPlan(log, ckpt, compiled, inputs, chosen, layout, checked.mode, !!opts.trace);
  const run = await encryptedRun(opts, checked.mode, chosen, layout, inputs, workers, log);
  const peakRssMb = rssPeak.stop();
  const cmp = compareLogits(inputs.plain.logits, run.he, inputs.y, inputs.n, inputs.classes);
  return validationReport({ ckpt, training, compiled, inputs, chosen, layout, run, cmp, mode: checked.mode, refreshMode: checked.refreshMode, peakRssMb, totalMs: performance.now() - t0 });
}

/** The options as checked before anything is loaded: a typo fails in a second, not after keygen. */
interface CheckedOptions {
  mode: 'encrypt' | 'simulate';
  packingSpec: ReturnType<typeof parsePacking>;
  refreshMode: 'none' | 'client';
  workersPerSample: number;
}

function checkOptions(opts: ValidateOptions): CheckedOptions {
  const mode = parseMode(opts.mode);
  const packingSpec = parsePacking(opts.queue ? queuePacking(opts.packing, opts.refresh, opts.trace) : opts.packing);
  const refreshMode = opts.refresh ?? 'none';
  if (refreshMode !== 'none' && refreshMode !== 'client') throw new HepolyError(`--refresh: expected none or client, found ${JSON.stringify(refreshMode)}`);
  if (opts.scaleBits !== undefined && !(Number.isInteger(opts.scaleBits) && opts.scaleBits >= MIN_SCALE_BITS && opts.scaleBits <= MAX_USEFUL_SCALE_BITS)) {
    throw new HepolyError(`--scale-bits: expected a whole number from ${MIN_SCALE_BITS} to ${MAX_USEFUL_SCALE_BITS}, found ${opts.scaleBits}`);
  }
  const workersPerSample = checkTeamSize(opts.workersPerSample ?? 1, opts.workers ?? availableParallelism());
  if (workersPerSample > 1 && (packingSpec.kind === 'batch' || packingSpec.kind === 'token')) {
    throw new HepolyError(`--workers-per-sample ${workersPerSample}: only sample packing splits one sample over several workers, and --packing ${packingSpec.kind} spreads each layer over all of them already. Use --packing sample, or leave the flag out.`, { exitCode: 2 });
  }
  if (workersPerSample > 1 && opts.queue) throw new HepolyError(`--workers-per-sample ${workersPerSample} with --queue: a queue worker runs each job on its own threads; use one or the other`, { exitCode: 2 });
  return { mode, packingSpec, refreshMode, workersPerSample };
}

/** The held-out samples, as the plaintext model sees them and as the client encrypts them. */
interface HeldOutInputs {
  split: Awaited<ReturnType<typeof heldOutSplit>>;
  n: number;
  /** what the client encrypts: the samples as the program's input tensor (one-hot token rows for a language model) */
  xp: Float32Array;
  perIn: number;
  y: Int32Array;
  classes: number;
  /** the plaintext model (the trainer's tfjs interpreter) and its range checks */
  plain: ReturnType<typeof plaintextPass>;
}

async function heldOutInputs(ckpt: Checkpoint, compiled: HeProgram, opts: ValidateOptions): Promise<HeldOutInputs> {
  const split = await heldOutSplit(ckpt, opts.data);
  const n = sampleCount(opts.samples, split.count);
  const x = split.x.subarray(0, n * size(ckpt.graph.inputShape));
  const xp = encodeSamples(compiled, x, n);
  return { split, n, xp, perIn: size(compiled.inputShape), y: split.y.subarray(0, n), classes: ckpt.graph.classes, plain: plaintextPass(ckpt, x, n) };
}

/** The CKKS parameters and the program they run (cut into segments where the client refreshes). */
interface ChosenParameters {
  params: HeParams;
  program: HeProgram;
  maxAbs: number;
  paramsSource: string;
  refreshChoice: string | null;
  /** an image plane's slots: sample packing needs at least these */
  minSlots: number | undefined;
  packingOpt: ReturnType<typeof parsePacking>['kind'];
  batchOnly: boolean;
  /** the program is cut into segments with client refreshes */
  cut: boolean;
}

async function chooseParameters(ckpt: Checkpoint, compiled: HeProgram, inputs: HeldOutInputs, checked: CheckedOptions, opts: ValidateOptions, workers: number): Promise<ChosenParameters> {
  const { xp, n } = inputs;
  const asked = packingFor(compiled, checked.packingSpec.kind);
  // a queued run ships sample shards or one batch pass: auto is sample there unless only batch runs the network
  const packingOpt = opts.queue && asked === 'auto' ? 'sample' : asked;
  const batchOnly = isBatchOnly(compiled);
  let program = compiled;
  let maxAbs = calibrate(program, xp, Math.min(n, 32));
  let params: HeParams;
  let paramsSource = 'auto';
  const minSlots = ckpt.graph.inputShape.length === 3 ? nextPow2(ckpt.graph.inputShape[0] * ckpt.graph.inputShape[1]) : undefined;
  let refreshChoice: string | null = null;
  if (!opts.params || opts.params === 'auto') {
    if (checked.refreshMode === 'client') {
      // refreshes make every ring usable: pick the fastest estimate, cut or not
      const best = await chooseWithRefresh(compiled, xp, n, maxAbs, workers, minSlots, packingOpt, opts.scaleBits);
      ({ params, program, maxAbs } = best);
      refreshChoice = best.why;
    } else params = chooseParams({ depth: program.depth, maxAbs, minScaleBits: opts.scaleBits });
  } else {
    if (opts.scaleBits !== undefined) throw new HepolyError('--scale-bits applies to --params auto; a --params file sets scale_bits itself');
    params = loadParamsFile(opts.params);
    paramsSource = opts.params;
    if (checked.refreshMode === 'client' && levelsOf(params) >= 1) {
      program = cutToParams(compiled, params, xp, n);
      if (program !== compiled) maxAbs = calibrate(program, xp, Math.min(n, 32));
    }
    checkParams(params, { depth: program.depth, maxAbs }, opts.params);
  }
  const cut = (program.refreshes ?? []).length > 0;
  if (cut && packingOpt === 'batch' && !batchOnly) {
    throw new HepolyError('--refresh client: refreshes run with sample packing (one sample per round trip); use --packing sample or auto');
  }
  if (cut && (packingOpt === 'stacked' || packingOpt === 'interleaved')) {
    throw new HepolyError(`--refresh client: refreshes run with sample packing (one sample per round trip); use --packing sample or auto, not ${packingOpt}`);
  }
  return { params, program, maxAbs, paramsSource, refreshChoice, minSlots, packingOpt, batchOnly, cut };
}

/** How samples sit in slots, and the evaluator that serves them. */
interface ChosenPacking {
  slots: number;
  packing: ServerPacking;
  packingReason: string;
  packingName: string;
  stacked: StackedProgram | null;
  plan: SamplePlan | null;
  evaluator: 'batch' | 'sample';
  samplesPerPass: number;
  /** the program the server runs (the M-sample program when stacked) */
  served: HeProgram;
  /** what the client packs and unpacks with: the registered packing's plan of `served` */
  packed: PackingPlan;
  est: ValidationReport['estimatedSeconds'];
}

async function choosePacking(ckpt: Checkpoint, chosen: ChosenParameters, n: number, spec: ReturnType<typeof parsePacking>, workers: number, mode: 'encrypt' | 'simulate'): Promise<ChosenPacking> {
  const { params, program, packingOpt } = chosen;
  const slots = params.polyModulusDegree / 2;
  let { plan, planError } = trySamplePlan(chosen, slots);
  const multi = packingOpt === 'stacked' || packingOpt === 'interleaved';
  if (packingOpt === 'sample' && !plan) throw new HepolyError(`--packing sample: ${planError}. Use --packing batch or larger --params`);
  if (multi && !plan) throw new HepolyError(`--packing ${packingOpt} runs on the sample-packing evaluator, which is unavailable here: ${planError}. Use --packing batch or larger --params`);
  if (chosen.cut && !plan && !chosen.batchOnly) throw new HepolyError(`--refresh client needs sample packing, which is unavailable here: ${planError}`);
  // batch and sample packing by the calibrated cost model, the one --packing auto and he-plan use
  const est =
    mode === 'encrypt'
      ? {
          batch: await predictSeconds(packingOf('batch').plan(program, slots, slots), params, n, workers),
          sample: plan ? await predictSeconds({ kind: 'sample', program, slots, samplesPerPass: 1, sample: plan, stacked: null, rotationSteps: plan.rotationSteps }, params, n, workers) : null,
        }
      : null;
  let packing: ServerPacking;
  let packingReason: string;
  let stacked: StackedProgram | null = null;
  if (multi && spec.m !== null) {
    ({ stacked, plan } = stackedAsAsked(ckpt, program, params, packingOpt, spec.m));
    packing = packingOpt as 'stacked' | 'interleaved';
    packingReason = 'chosen with --packing';
  } else if (packingOpt === 'batch' || packingOpt === 'sample' || packingOpt === 'token') {
    packing = packingOpt;
    packingReason =
      spec.kind === 'auto' && packingOpt === 'token'
        ? 'attention reads other tokens by rotating token blocks: one ciphertext per feature'
        : chosen.batchOnly && packingOpt === 'batch'
          ? 'attention multiplies arbitrary element pairs: batch packing'
          : 'chosen with --packing';
  } else if (chosen.cut) {
    packing = 'sample';
    packingReason = 'client refreshes run per sample';
  } else if (!plan) {
    packing = 'batch';
    packingReason = `sample packing unavailable (${planError})`;
  } else {
    const kinds: ServerPacking[] = multi ? [packingOpt] : ['batch', 'sample', 'stacked', 'interleaved'];
    const d = await chooseServerPacking(program, params, plan, n, workers, { kinds, heapLimit: MULTI_SAMPLE_HEAP_LIMIT });
    if (!d) throw new HepolyError(`--packing ${packingOpt}: no ${packingOpt} packing fits N=${params.polyModulusDegree} and ${n} samples (its slots, an image plane of M samples, Galois keys or a worker's SEAL heap); use --packing sample or batch`);
    ({ packing, stacked, reason: packingReason } = d);
    plan = d.plan ?? plan;
  }
  // the evaluator the registered packing runs on: batch stages, or one pass per request
  const evaluator = packingOf(packing).evaluator;
  const packed: PackingPlan =
    evaluator === 'batch'
      ? packingOf(packing).plan(program, slots, slots)
      : { kind: packing, program: stacked ? stacked.program : program, slots, samplesPerPass: stacked ? stacked.samples : 1, sample: plan!, stacked, rotationSteps: plan!.rotationSteps };
  const samplesPerPass = evaluator === 'batch' ? Math.min(n, packed.samplesPerPass) : packed.samplesPerPass;
  const packingName = stacked ? `${packing} x${stacked.samples}` : packing;
  const served = packed.program;
  return { slots, packing, packingReason, packingName, stacked, plan, evaluator, samplesPerPass, served, packed, est };
}

/** The sample-packing plan where one is wanted and fits, else why not. */
function trySamplePlan(chosen: ChosenParameters, slots: number): { plan: SamplePlan | null; planError: string | null } {
  const { params, program, packingOpt, minSlots } = chosen;
  if (packingOpt === 'batch') return { plan: null, planError: null };
  if (minSlots && slots < minSlots) return { plan: null, planError: `an image plane needs ${minSlots} slots, N=${params.polyModulusDegree} has ${slots}` };
  try {
    const plan = planSample(program, slots);
    const planError = galoisKeyProblem(params, plan);
    return { plan: planError ? null : plan, planError };
  } catch (e) {
    if (!(e instanceof HepolyError) || packingOpt === 'sample') throw e;
    return { plan: null, planError: e.message };
  }
}

/** --packing stacked:M / interleaved:M: the M-sample program and its plan, or why M does not fit. */
function stackedAsAsked(ckpt: Checkpoint, program: HeProgram, params: HeParams, packingOpt: string, m: number): { stacked: StackedProgram; plan: SamplePlan } {
  const slots = params.polyModulusDegree / 2;
  const order = packingOpt === 'interleaved' ? 'interleave' : 'block';
  if (m > slots || slots % m) throw new HepolyError(`--packing ${packingOpt}:${m}: M must be a power of two that divides the ${slots} slots of N=${params.polyModulusDegree}, e.g. --packing ${packingOpt}:${Math.min(slots, nextPow2(m))}`);
  let stacked: StackedProgram;
  let plan: SamplePlan;
  try {
    stacked = stackForSlots(program, m, slots, order);
    plan = planSample(stacked.program, slots);
  } catch (e) {
    // the planner knows the shapes, not whose they are
    if (e instanceof HepolyError) throw new HepolyError(`${ckpt.dir}: ${e.message}`);
    throw e;
  }
  const problem = galoisKeyProblem(params, plan);
  if (problem) throw new HepolyError(`--packing ${packingOpt}:${m}: ${problem}. Use fewer samples per ciphertext`);
  return { stacked, plan };
}

function logPlan(log: (line: string) => void, ckpt: Checkpoint, compiled: HeProgram, inputs: HeldOutInputs, chosen: ChosenParameters, layout: ChosenPacking, mode: string, trace: boolean): void {
  const { program, cut } = chosen;
  log(`checkpoint ${ckpt.dir}: ${inputs.split.name} split, ${inputs.n} of ${inputs.split.count} samples`);
  log(`program: depth ${compiled.depth}, ${compiled.steps.length} steps`);
  if (chosen.refreshChoice) log(`--refresh client: ${chosen.refreshChoice}`);
  if (trace && layout.packed.fold) log('--trace: per-layer errors read batch packing\'s layout; run with --packing batch to see them');
  if (cut && trace) log('--trace: not available with client refreshes (the segments run in separate worker calls); the refreshes below show where values return to the client');
  if (cut) {
    for (const r of program.refreshes!) log(`  client refresh before ${refreshPointName(program, r)}: ${r.tensors.map((t) => program.tensors[t.src].label).join('; ')}`);
  }
  for (const l of program.layers) log(`  ${l.node.padEnd(12)} ${l.op.padEnd(22)} ${String(l.levels).padStart(2)} level${l.levels === 1 ? ' ' : 's'}  ${l.how}`);
  log(`parameters (${chosen.paramsSource}): ${describeParams(chosen.params)}, 128-bit security (SEAL tc128)`);
  log(`packing: ${layout.packingName} (${layout.packingReason})`);
  if (mode === 'simulate') log('mode: simulate (float64, same packing and rescale points, no encryption)');
}

/** What the encrypted passes produced and cost. */
interface PassTotals {
  /** decrypted logits, samples x classes */
  he: Float64Array;
  encryptMs: number;
  evaluateMs: number;
  decryptMs: number;
  up: number;
  down: number;
  ctIn: number;
  ctOut: number;
  perPass: number;
  latency: number;
  layerErrors: LayerError[] | null;
}

interface EncryptedRun extends PassTotals {
  keygenMs: number;
  serverSetupMs: number;
  keyBytes: number;
  rotationKeys: number;
  counts: OpCounts;
  workerHeapMb: number;
  workerCount: number;
  workersPerSample: number;
  refreshPoints: RefreshSummary['points'];
  queueStats: QueueStats | undefined;
  latencyBreakdown: LatencyPart[];
}

type RunServer = HEServer | QueueServer;

/** The client makes keys, the server (workers or the queue) starts from the public bundle, the passes run. */
async function encryptedRun(opts: ValidateOptions, mode: 'encrypt' | 'simulate', chosen: ChosenParameters, layout: ChosenPacking, inputs: HeldOutInputs, workers: number, log: (line: string) => void): Promise<EncryptedRun> {
  const tk = performance.now();
  const ownClient: ClientLike = mode === 'simulate' ? new SimClient(chosen.params) : await HEClient.create(chosen.params);
  const queued = opts.queue ? startQueueRun(ownClient, opts.queue) : null;
  const client = queued?.client ?? ownClient;
  const rotationSteps = layout.packed.rotationSteps;
  const bundle = client.publicBundle(rotationSteps);
  const keygenMs = performance.now() - tk;
  const keyBytes = bundle.publicKey.length + bundle.relinKeys.length + (bundle.galoisKeys?.length ?? 0);
  log(`keys: ${fmtMs(keygenMs)}, ${fmtBytes(keyBytes)} (public + relinearization${bundle.galoisKeys ? ` + ${rotationSteps.length} Galois` : ''})`);

  const ts = performance.now();
  const engine = mode === 'simulate' ? 'simulate' : 'seal';
  const server: RunServer = queued
    ? await queued.start(bundle, layout.served, engine, layout.evaluator)
    : await HEServer.start(bundle, layout.served, layout.evaluator, { workers, workersPerSample: opts.workersPerSample, mode: engine, keepAll: !!opts.trace && layout.evaluator === 'batch' });
  const serverSetupMs = performance.now() - ts;
  const perSample = opts.workersPerSample ?? 1;
  log(`server: ${server.workerCount} worker threads ready in ${fmtMs(serverSetupMs)}${perSample > 1 ? ` (teams of ${perSample}: each sample on ${perSample} threads)` : ''}`);
  let totals: PassTotals;
  let workerHeapMb: number;
  // the server's workers wait while the client refreshes: the client takes as many threads
  const refresher = chosen.cut && !queued && ownClient instanceof HEClient ? ownClient.refreshPool(workers) : null;
  try {
    const pass = { client, server, chosen, layout, inputs, trace: !!opts.trace, log, refresher };
    totals = layout.evaluator === 'batch' ? await runBatches(pass) : await runPasses(pass);
    totals.up += keyBytes;
    for (const r of server.refreshes) {
      totals.up += r.bytesToServer;
      totals.down += r.bytesToClient;
    }
    workerHeapMb = server.workerHeapBytes / 2 ** 20;
  } finally {
    await server.close();
    await refresher?.close();
    client.delete();
  }
  const breakdown = server instanceof HEServer ? server.latencyBreakdown : [];
  if (breakdown.length) log(`  evaluation by component: ${breakdown.map((p) => `${p.component} ${fmtMs(p.ms)} (${(100 * p.share).toFixed(0)}%)`).join(', ')}`);
  // counts and queue figures as they stand once the server has closed
  return {
    ...totals,
    keygenMs,
    serverSetupMs,
    keyBytes,
    rotationKeys: rotationSteps.length,
    counts: server.counts,
    workerHeapMb,
    workerCount: server.workerCount,
    workersPerSample: opts.workersPerSample ?? 1,
    refreshPoints: server.refreshes,
    queueStats: queued ? queued.stats() : undefined,
    latencyBreakdown: breakdown,
  };
}

interface PassContext {
  client: ClientLike;
  server: RunServer;
  chosen: ChosenParameters;
  layout: ChosenPacking;
  inputs: HeldOutInputs;
  trace: boolean;
  log: (line: string) => void;
  /** the client's refresh threads (real SEAL, a cut program, no queue) */
  refresher: RefreshPool | null;
}

/**
 * A client refresh channel that times the client's part (decrypt and re-encrypt); with a
 * watch, what it decrypts is checked against the plaintext program.
 */
function timedRefresh(client: ClientLike, watch?: () => RefreshWatch | null, pool?: RefreshPool | null): { channel: RefreshChannel; ms: () => number } {
  let refreshMs = 0;
  // the client's own threads where it has them, else this thread
  const reencrypt = pool
    ? (cts: Uint8Array[], values: boolean) => pool.refresh(cts, values)
    : async (cts: Uint8Array[]) => {
        const values = cts.map((b) => client.decrypt(b));
        return { fresh: client.encrypt(values), values };
      };
  return {
    channel: async (_label, cts, at) => {
      const w = watch?.();
      const tr = performance.now();
      const r = await reencrypt(cts, !!(w && at));
      refreshMs += performance.now() - tr;
      if (w && at) w.check(at, r.values!);
      return r.fresh;
    },
    ms: () => refreshMs,
  };
}

/** Batch and token packing (the batch evaluator): up to `perPass` samples a pass (batch: one slot each; token: one slot per token block). */
async function runBatches({ client, server, chosen, layout, inputs, trace, log, refresher }: PassContext): Promise<PassTotals> {
  const { n, xp, perIn, classes } = inputs;
  const { packed } = layout;
  const perPass = packed.samplesPerPass;
  const packer = packingOf(packed.kind);
  // the first pass's refreshes are checked against the plaintext program on up to 4 of its samples
  let watch: RefreshWatch | null = chosen.cut ? new RefreshWatch(chosen.program, xp, Math.min(4, n, perPass), perIn, log, packed.fold) : null;
  const refresh = timedRefresh(client, () => watch, refresher);
  const t: PassTotals = { he: new Float64Array(n * classes), encryptMs: 0, evaluateMs: 0, decryptMs: 0, up: 0, down: 0, ctIn: 0, ctOut: 0, perPass: 0, latency: 0, layerErrors: null };
  reportProgress({ stage: 'batches', done: 0, total: n, unit: 'samples' });
  for (let start = 0; start < n; start += perPass) {
    const cnt = Math.min(perPass, n - start);
    let t0 = performance.now();
    const cts = client.encrypt(packer.pack(packed, xp.subarray(start * perIn, (start + cnt) * perIn), cnt));
    const enc = performance.now() - t0;
    t0 = performance.now();
    const res = await server.evaluateBatch(cts, refresh.channel);
    const ev = performance.now() - t0;
    watch = null;
    t0 = performance.now();
    const outs = res.outputs.map((b) => (b ? client.decrypt(b) : null));
    const dec = performance.now() - t0;
    t.he.set(packer.unpack(packed, outs, cnt), start * classes);
    t.encryptMs += enc;
    t.evaluateMs += ev;
    t.decryptMs += dec;
    t.latency = Math.max(t.latency, enc + ev + dec);
    t.up += cts.reduce((a, b) => a + b.length, 0);
    t.down += res.outputs.reduce((a, b) => a + (b ? b.length : 0), 0);
    t.ctIn += cts.length;
    t.ctOut += res.outputs.length;
    t.perPass = cts.length + res.outputs.length;
    log(`  batch of ${cnt}: encrypt ${fmtMs(enc)}, evaluate ${fmtMs(ev)}, decrypt ${fmtMs(dec)}`);
    reportProgress({ stage: 'batches', done: Math.min(n, start + perPass), total: n, unit: 'samples' });
    if (trace && start === 0 && !packed.fold) t.layerErrors = traceBatch(chosen.program, client, res.tensors, xp, Math.min(cnt, 16), perIn);
  }
  if (chosen.cut) log(`  client refreshes: ${chosen.program.refreshes!.length} round trips per batch, ${fmtMs(refresh.ms())} in all (inside evaluate)`);
  return t;
}

/** Sample, stacked or interleaved packing: one pass per sample, or per M samples in one tensor. */
async function runPasses({ client, server, chosen, layout, inputs, trace, log, refresher }: PassContext): Promise<PassTotals> {
  const { n, xp, perIn, classes } = inputs;
  const { stacked, packed } = layout;
  const packer = packingOf(packed.kind);
  const p = layout.plan!;
  const cut = chosen.cut;
  const refresh = timedRefresh(client, undefined, refresher);
  const m = packed.samplesPerPass;
  const passes = Math.ceil(n / m);
  const countOf = (i: number) => Math.min(m, n - i * m);
  let t0 = performance.now();
  const inputsCt: Uint8Array[][] = [];
  reportProgress({ stage: 'encrypt', done: 0, total: passes, unit: 'passes' });
  for (let i = 0; i < passes; i++) {
    inputsCt.push(client.encrypt(packer.pack(packed, xp.subarray(i * m * perIn, (i * m + countOf(i)) * perIn), countOf(i))));
    reportProgress({ stage: 'encrypt', done: i + 1, total: passes, unit: 'passes' });
  }
  const encryptMs = performance.now() - t0;
  t0 = performance.now();
  const res = await server.evaluateSamples(inputsCt, trace && !cut, refresh.channel);
  const evaluateMs = performance.now() - t0;
  t0 = performance.now();
  const he = new Float64Array(n * classes);
  res.outputs.forEach((o, i) => he.set(packer.unpack(packed, o.map((b) => client.decrypt(b)), countOf(i)), i * m * classes));
  const decryptMs = performance.now() - t0;
  const meanWorker = res.ms.reduce((a, b) => a + b, 0) / Math.max(1, res.ms.length);
  const unit = stacked ? `pass of ${m} samples` : 'sample';
  log(`  ${n} samples${stacked ? ` in ${passes} pass${passes === 1 ? '' : 'es'}` : ''}: encrypt ${fmtMs(encryptMs)}, evaluate ${fmtMs(evaluateMs)} (${fmtMs(meanWorker)} per ${unit} on one worker${cut ? `, client refreshes ${fmtMs(refresh.ms())} in all` : ''}), decrypt ${fmtMs(decryptMs)}`);
  return {
    he,
    encryptMs,
    evaluateMs,
    decryptMs,
    latency: (encryptMs + decryptMs + refresh.ms()) / passes + meanWorker,
    up: inputsCt.reduce((a, s) => a + s.reduce((b, c) => b + c.length, 0), 0),
    down: res.outputs.reduce((a, s) => a + s.reduce((b, c) => b + c.length, 0), 0),
    ctIn: inputsCt.reduce((a, s) => a + s.length, 0),
    ctOut: res.outputs.reduce((a, s) => a + s.length, 0),
    perPass: inputsCt[0].length + res.outputs[0].length,
    // every layer of the first passes (at most 8 samples' worth of passes) against the plaintext program
    layerErrors: trace ? traceSamples(chosen.program, p, client, res.trace.slice(0, Math.ceil(8 / m)), xp, perIn, stacked, n) : null,
  };
}

interface ReportParts {
  ckpt: Checkpoint;
  training: ReturnType<typeof trainingStatus>;
  compiled: HeProgram;
  inputs: HeldOutInputs;
  chosen: ChosenParameters;
  layout: ChosenPacking;
  run: EncryptedRun;
  cmp: ReturnType<typeof compareLogits>;
  mode: 'encrypt' | 'simulate';
  refreshMode: 'none' | 'client';
  peakRssMb: number;
  totalMs: number;
}

function validationReport({ ckpt, training, compiled, inputs, chosen, layout, run, cmp, mode, refreshMode, peakRssMb, totalMs }: ReportParts): ValidationReport {
  const { n } = inputs;
  const report: ValidationReport = {
    checkpoint: ckpt.dir,
    training: { trained_epochs: training.trained_epochs, planned_epochs: training.planned_epochs, complete: training.complete },
    split: inputs.split.name,
    samples: n,
    mode,
    packing: layout.packingName,
    packingReason: layout.packingReason,
    samplesPerPass: layout.samplesPerPass,
    params: summarize(chosen.params, { depth: chosen.program.depth, maxAbs: chosen.maxAbs }),
    paramsSource: chosen.paramsSource,
    depth: compiled.depth,
    layers: chosen.program.layers,
    plaintextAccuracy: cmp.plainCorrect / n,
    encryptedAccuracy: cmp.heCorrect / n,
    agreement: cmp.agree / n,
    disagreements: n - cmp.agree,
    disagreementSamples: cmp.disagreements.slice(0, 20),
    nearTies: cmp.nearTies,
    agreeingMaxError: cmp.agreeingMaxError,
    maxAbsError: cmp.maxAbsError,
    meanAbsError: cmp.meanAbsError,
    logitRange: cmp.logitRange,
    relativeError: cmp.logitRange > 0 ? cmp.maxAbsError / cmp.logitRange : cmp.maxAbsError,
    layerErrors: run.layerErrors,
    timings: { keygenMs: run.keygenMs, serverSetupMs: run.serverSetupMs, encryptMs: run.encryptMs, evaluateMs: run.evaluateMs, decryptMs: run.decryptMs, totalMs },
    latencyMsPerSample: run.latency,
    amortizedMsPerSample: (run.encryptMs + run.evaluateMs + run.decryptMs) / n,
    bytes: { keys: run.keyBytes, clientToServer: run.up, serverToClient: run.down },
    ciphertexts: { input: run.ctIn, output: run.ctOut, perPass: run.perPass },
    ops: run.counts,
    rotationKeys: run.rotationKeys,
    peakRssMb,
    workerHeapMb: run.workerHeapMb,
    workers: run.workerCount,
    workersPerSample: run.workersPerSample,
    outOfRange: inputs.plain.outOfRange,
    estimatedSeconds: layout.est,
    refreshes: refreshMode === 'client' ? summarizeRefreshes(run.refreshPoints, layout.evaluator === 'batch' ? Math.ceil(n / layout.packed.samplesPerPass) : n) : null,
    latencyBreakdown: run.latencyBreakdown,
  };
  if (run.queueStats) report.queue = run.queueStats;
  return report;
}

function summarizeRefreshes(points: RefreshSummary['points'], passes: number): RefreshSummary {
  return {
    perPass: points.length,
    total: points.length * passes,
    points: points.map((r) => ({ ...r, ciphertexts: r.ciphertexts / passes, bytesToClient: r.bytesToClient / passes, bytesToServer: r.bytesToServer / passes })),
  };
}

/**
 * `--params auto --refresh client`: for each ring, the most levels it holds, the program cut
 * to fit them, and the estimated time of the run (sample packing, whose Galois keys must fit
 * the wasm heap). Small rings need more round trips but make each operation cheaper.
 */
/** Seconds one client refresh adds per sample in --params auto's choice (network round trip and client work). */
const REFRESH_ROUND_TRIP_S = 1;

async function chooseWithRefresh(
  compiled: HeProgram,
  x: Float32Array,
  n: number,
  maxAbs0: number,
  workers: number,
  minSlots: number | undefined,
  packingOpt: ReturnType<typeof parsePacking>['kind'],
  minScaleBits?: number,
): Promise<{ params: HeParams; program: HeProgram; maxAbs: number; why: string }> {
  type Option = { params: HeParams; program: HeProgram; maxAbs: number; seconds: number };
  const options: Option[] = [];
  const tooBig: string[] = [];
  const uncut = (() => {
    try {
      return chooseParams({ depth: compiled.depth, maxAbs: maxAbs0, minScaleBits });
    } catch {
      return null;
    }
  })();
  if (uncut && packingOpt !== 'sample') {
    options.push({ params: uncut, program: compiled, maxAbs: maxAbs0, seconds: await predictSeconds(batchPlan(compiled, uncut.polyModulusDegree / 2, packingOpt), uncut, n, workers) });
  }
  const search = { maxAbs: maxAbs0, calibrate: (p: HeProgram) => calibrate(p, x, Math.min(n, 32)), minSlots, minScaleBits, fallbackLevels: 2 };
  for (const { N, cuts } of ringCuts(compiled, search)) {
    for (const { program, params, maxAbs } of cuts) {
      if (isBatchOnly(program)) {
        options.push({ params, program, maxAbs, seconds: await predictSeconds(batchPlan(program, N / 2, packingOpt), params, n, workers) });
        break;
      }
      try {
        const fit = sampleCutFit(program, params);
        if ('refused' in fit && fit.refused === 'keys') break;
        if ('refused' in fit) {
          tooBig.push(`N=${N} with ${levelsOf(params)} levels`);
          continue;
        }
        const { plan } = fit;
        const single = { kind: 'sample' as const, program, slots: N / 2, samplesPerPass: 1, sample: plan, stacked: null, rotationSteps: plan.rotationSteps };
        options.push({ params, program, maxAbs, seconds: await predictSeconds(single, params, n, workers) });
      } catch (e) {
        if (!(e instanceof HepolyError)) throw e;
      }
      break;
    }
  }
  if (!options.length) {
    throw new HepolyError(
      `--refresh client: no ring fits this network even when cut into segments (depth ${compiled.depth})${tooBig.length ? `; ${tooBig.join(', ')} would need more than a worker's 4 GiB SEAL heap` : ''}; use a shallower model or --params FILE`,
    );
  }
  // each refresh is a round trip the data owner takes part in: priced, so a small ring's
  // cheaper operations do not win by interacting at every layer
  const cost = (o: Option) => o.seconds + (o.program.refreshes?.length ?? 0) * n * REFRESH_ROUND_TRIP_S;
  options.sort((a, b) => cost(a) - cost(b));
  const best = options[0];
  const cuts = best.program.refreshes?.length ?? 0;
  const why =
    `N=${best.params.polyModulusDegree} with ${levelsOf(best.params)} levels, ${cuts} refresh${cuts === 1 ? '' : 'es'} per pass (estimated ${fmtS(best.seconds)}; ` +
    options.slice(1).map((o) => `N=${o.params.polyModulusDegree}: ${o.program.refreshes?.length ?? 0} refreshes, ${fmtS(o.seconds)}`).join(', ') +
    (tooBig.length ? `${options.length > 1 ? '; ' : ''}over a worker's 4 GiB SEAL heap: ${tooBig.join(', ')}` : '') +
    ')';
  return { params: best.params, program: best.program, maxAbs: best.maxAbs, why };
}

/** A program only batch packing runs: products of arbitrary element pairs or gathers (attention, patches). */
function isBatchOnly(p: HeProgram): boolean {
  return p.steps.some((s) => s.kind === 'dot' || (s.kind === 'struct' && s.op.kind === 'gather'));
}

/** `--packing` for this program: batch-only programs take auto as batch and refuse the others with the reason. */
function packingFor(p: HeProgram, asked: ReturnType<typeof parsePacking>['kind']): ReturnType<typeof parsePacking>['kind'] {
  // slot counts are powers of two: whether the tokens fold does not depend on the ring
  const fold = tokenFoldProblem(p, 1 << 30);
  if (asked === 'token' && fold !== true) throw new HepolyError(`--packing token: ${fold}`);
  if (!isBatchOnly(p)) return asked;
  if (asked !== 'auto' && asked !== 'batch' && asked !== 'token') {
    throw new HepolyError(`--packing ${asked}: this network's attention multiplies arbitrary pairs of elements (and gathers patches or tokens), which only batch and token packing (a ciphertext per element, or per feature with tokens in blocks of slots) run; use --packing token, batch or auto`);
  }
  if (asked === 'auto') return fold === true ? 'token' : 'batch';
  return asked;
}

/** The batch-evaluator plan a program is served with: token packing when asked (or chosen) for it, else batch. */
function batchPlan(p: HeProgram, slots: number, packingOpt: ReturnType<typeof parsePacking>['kind']): PackingPlan {
  return packingOf(packingOpt === 'token' ? 'token' : 'batch').plan(p, slots, slots);
}

function sampleCount(samples: number | 'all' | undefined, available: number): number {
  if (samples === undefined) return Math.min(available, 100);
  if (samples === 'all' || samples === 0) return available;
  if (typeof samples !== 'number' || !Number.isInteger(samples) || samples < 0) {
    throw new HepolyError(`--samples: expected a positive integer or "all", found ${JSON.stringify(samples)}`);
  }
  return Math.min(samples, available);
}

/** Plaintext logits (tfjs, inference mode) and the count of values outside ranges.json. */
function plaintextPass(ckpt: Checkpoint, x: Float32Array, n: number): { logits: Float32Array; outOfRange: OutOfRange } {
  const g = ckpt.graph;
  const per = size(g.inputShape);
  const params = toParams(ckpt.weights);
  const logits = new Float32Array(n * g.classes);
  const r = ckpt.ranges;
  const oor: OutOfRange = { inputSamples: 0, inputValues: 0, activationSamples: 0, perActivation: {}, checked: !!r };
  try {
    for (let start = 0; start < n; start += 128) {
      const m = Math.min(128, n - start);
      const xb = x.subarray(start * per, (start + m) * per);
      tf.tidy(() => {
        const out = forward(g, params, tf.tensor(xb, [m, ...g.inputShape]), { training: false, recordActivationInputs: !!r });
        logits.set(out.logits.dataSync(), start * g.classes);
        if (!r) return;
        for (let s = 0; s < m; s++) {
          let bad = 0;
          for (let i = 0; i < per; i++) {
            const v = xb[s * per + i];
            if (v < r.input.min || v > r.input.max) bad++;
          }
          if (bad) oor.inputSamples++;
          oor.inputValues += bad;
        }
        const badSample = new Uint8Array(m);
        for (const [name, t] of out.activationInputs) {
          const st = r.activations[name];
          if (!st) continue;
          const d = t.dataSync();
          const k = d.length / m;
          let count = 0;
          for (let s = 0; s < m; s++) {
            for (let i = 0; i < k; i++) {
              const v = d[s * k + i];
              if (v < st.min || v > st.max) {
                count++;
                badSample[s] = 1;
                break;
              }
            }
          }
          oor.perActivation[name] = (oor.perActivation[name] ?? 0) + count;
        }
        oor.activationSamples += badSample.reduce((a, b) => a + b, 0);
      });
    }
  } finally {
    for (const t of params.values()) t.dispose();
  }
  return { logits, outOfRange: oor };
}

/**
 * How large the values are that must fit in q0 above the scale, with a 4x margin. Only the
 * last level is tight: a ciphertext at level l >= 1 has q1..ql (each about the scale) of extra
 * room. So the bound covers the tensors computed into the last level and, for the linear steps
 * producing them, every partial sum an evaluation order could form (sum_i |w_i x_i| + |b|).
 */
export function calibrate(p: HeProgram, x: Float32Array, count: number): number {
  const per = size(p.inputShape);
  const last = p.steps.filter((s) => p.tensors[s.out].depth === p.depth);
  const entries = new Map(
    last.flatMap((s, k) => (s.kind === 'linear' ? s.terms.map((t, j) => [`${k}:${j}`, weightedEntries(t.op)] as const) : [])),
  );
  let m = 1;
  for (let smp = 0; smp < count; smp++) {
    const vals = programForward(p, Float64Array.from(x.subarray(smp * per, (smp + 1) * per)));
    last.forEach((s, k) => {
      const v = vals[s.out];
      for (let i = 0; i < v.length; i++) m = Math.max(m, Math.abs(v[i]));
      if (s.kind !== 'linear') return;
      const l1 = new Float64Array(v.length);
      if (s.bias) for (let o = 0; o < l1.length; o++) l1[o] = Math.abs(s.bias[o]);
      s.terms.forEach((t, j) => {
        const e = entries.get(`${k}:${j}`)!;
        const src = vals[t.src];
        for (let q = 0; q < e.length; q++) l1[e.out[q]] += Math.abs(e.w[q] * src[e.inp[q]]);
      });
      for (const a of l1) m = Math.max(m, a);
    });
  }
  return 4 * m;
}

/** Peak resident memory of the process (all worker threads' wasm heaps included). */
function trackRss(): { stop: () => number } {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 100);
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
      peak = Math.max(peak, process.memoryUsage().rss);
      return peak / 2 ** 20;
    },
  };
}

function traceBatch(p: HeProgram, client: ClientLike, tensors: Map<number, (Uint8Array | null)[]>, x: Float32Array, count: number, per: number): LayerError[] {
  const expected = Array.from({ length: count }, (_, s) => programForward(p, Float64Array.from(x.subarray(s * per, (s + 1) * per))));
  const out: LayerError[] = [];
  for (const t of p.tensors) {
    const cts = tensors.get(t.id);
    if (!cts) continue;
    let err = 0;
    let mag = 0;
    let level = -1;
    let scaleBits = 0;
    cts.forEach((b, e) => {
      const v = b ? client.decrypt(b) : null;
      if (b && level < 0) ({ level, scaleBits } = client.describe(b));
      for (let s = 0; s < count; s++) {
        const want = expected[s][t.id][e];
        err = Math.max(err, Math.abs((v ? v[s] : 0) - want));
        mag = Math.max(mag, Math.abs(want));
      }
    });
    out.push({ tensor: t.id, label: t.label, level, scaleBits, maxAbsError: err, maxAbsValue: mag });
  }
  return out;
}

/**
 * Per-layer errors of traced passes: each pass's tensors decrypted, unstacked into its samples
 * (stacked and interleaved passes hold several; tensor ids are the base program's) and
 * compared with the plaintext program on the same samples.
 */
function traceSamples(
  p: HeProgram,
  plan: SamplePlan,
  client: ClientLike,
  traces: { tensor: number; cts: Uint8Array[] }[][],
  x: Float32Array,
  per: number,
  stacked: StackedProgram | null,
  n: number,
): LayerError[] {
  const rows = new Map<number, LayerError>();
  const m = stacked ? stacked.samples : 1;
  traces.forEach((tr, pass) => {
    const count = Math.min(m, n - pass * m);
    const expected = Array.from({ length: count }, (_, s) => {
      const i = pass * m + s;
      return programForward(p, Float64Array.from(x.subarray(i * per, (i + 1) * per)));
    });
    for (const { tensor, cts } of tr) {
      const got = unpackTensor(plan, tensor, cts.map((b) => client.decrypt(b)));
      const row = rows.get(tensor) ?? { tensor, label: p.tensors[tensor].label, ...client.describe(cts[0]), maxAbsError: 0, maxAbsValue: 0 };
      for (let s = 0; s < count; s++) {
        const want = expected[s][tensor];
        const mine = stacked ? unstackTensor(stacked, tensor, got, s) : got;
        for (let i = 0; i < want.length; i++) {
          row.maxAbsError = Math.max(row.maxAbsError, Math.abs(mine[i] - want[i]));
          row.maxAbsValue = Math.max(row.maxAbsValue, Math.abs(want[i]));
        }
      }
      rows.set(tensor, row);
    }
  });
  return [...rows.values()];
}

export function fmtMs(ms: number): string {
  return ms >= 60000 ? `${(ms / 60000).toFixed(1)} min` : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`;
}

function fmtS(s: number): string {
  return fmtMs(s * 1000);
}

export function fmtBytes(b: number): string {
  return b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(1)} MiB` : `${(b / 1024).toFixed(1)} KiB`;
}

/** The JSON object `--json` prints (snake_case, stable keys). */
export function reportJson(r: ValidationReport): Record<string, unknown> {
  return {
    ...coreReportJson(r),
    samples_per_pass: r.samplesPerPass,
    mean_abs_error: r.meanAbsError,
    logit_range: r.logitRange,
    relative_error: r.relativeError,
    rotations: r.ops.rotations,
    ct_ct_mults: r.ops.ctCtMults,
    pt_mults: r.ops.ptMults,
    rotation_keys: r.rotationKeys,
    peak_rss_mb: r.peakRssMb,
    worker_heap_mb: r.workerHeapMb,
    workers: r.workers,
    workers_per_sample: r.workersPerSample,
    out_of_range_input_samples: r.outOfRange.inputSamples,
    out_of_range_activation_samples: r.outOfRange.activationSamples,
    // client round trips per pass for every model (0: the chain held the whole depth), --mode simulate too
    refreshes_per_pass: r.refreshes?.perPass ?? 0,
    refreshes: r.refreshes
      ? {
          per_pass: r.refreshes.perPass,
          total: r.refreshes.total,
          points: r.refreshes.points.map((p) => ({ before: p.before, tensors: p.tensors, ciphertexts: p.ciphertexts, bytes_to_client: p.bytesToClient, bytes_to_server: p.bytesToServer })),
        }
      : null,
    latency_breakdown: r.latencyBreakdown.map((p) => ({ component: p.component, ms: p.ms, share: p.share })),
  };
}
