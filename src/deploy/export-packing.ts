import { type Packing, type PackingKind, type PackingPlan, PACKINGS, PACKING_KINDS, firstUnsupported, packingOf } from '../he/packing/index.js';
import type { HeParams } from '../he/params.js';
import type { HeProgram } from '../he/program.js';
import { GALOIS_KEY_BUDGET, galoisKeyBytes, normalizeSteps } from '../he/key-sizes.js';
import { HepolyError } from '../util/errors.js';
import type { SlotLayout } from './artifact-format.js';
import type { Layout } from '../he/packing/layout.js';
import { passLayouts } from './packing-layout.js';
import { size } from '../he/tensor-ops.js';
import { tokenFoldProblem } from '../he/packing/token-fold.js';

/**
 * `hepoly export --packing KIND[:M]`: any packing of the registry (src/he/packing/index.ts)
 * the program supports. sample: one sample per request (latency); batch: up to one sample per
 * slot in one pass, no rotations (throughput); stacked / interleaved: M samples per pass. The
 * server plans the same packing from the program at start; the client gets only the pass's
 * slot layouts.
 */

export interface ExportPacking {
  kind: PackingKind;
  samplesPerPass: number;
  plan: PackingPlan;
  rotationSteps: number[];
  input: SlotLayout;
  output: SlotLayout;
}

/** Samples per pass tried for stacked / interleaved without `:M` (the largest that plans wins). */
const DEFAULT_MAX_M = 8;

/**
 * `--packing` as given, or the default: sample (latency); for a program sample packing cannot
 * lay out (attention's products of element pairs), token packing where the program has token
 * rows, else batch.
 */
export function packingSpec(spec: string | undefined, program: HeProgram): string {
  if (spec) return spec;
  if (!firstUnsupported(packingOf('sample'), program)) return 'sample';
  return tokenFoldProblem(program, 1 << 30) === true ? 'token' : 'batch';
}

export function exportPacking(spec: string, program: HeProgram, params: HeParams, source: string): ExportPacking {
  const [name, mText] = spec.split(':');
  if (!(PACKING_KINDS as readonly string[]).includes(name)) {
    throw new HepolyError(`--packing ${spec}: expected one of ${PACKINGS.map((p) => p.kind).join(', ')} (stacked and interleaved take :M samples per pass)`, { exitCode: 2 });
  }
  const kind = name as PackingKind;
  const packing = packingOf(kind);
  if (program.refreshes?.length && kind !== 'sample' && kind !== 'batch' && kind !== 'token') {
    throw new HepolyError(`--packing ${spec}: a model cut for --refresh client is served by sample packing (one sample per round trip), or batch or token packing (a batch per round trip); use --packing sample, batch or token`);
  }
  if (kind === 'token') {
    const fold = tokenFoldProblem(program, params.polyModulusDegree / 2);
    if (fold !== true) throw new HepolyError(`--packing token: ${fold}`, { exitCode: 2 });
  }
  const slots = params.polyModulusDegree / 2;
  const m = mText === undefined ? null : Number(mText);
  if (m !== null && !(Number.isInteger(m) && m >= 1 && m <= slots && slots % m === 0)) {
    throw new HepolyError(`--packing ${spec}: M must be a power of two that divides the ${slots} slots of N=${params.polyModulusDegree}, e.g. --packing ${kind}:4`, { exitCode: 2 });
  }
  const plan = m !== null ? planOrExplain(packing, program, slots, m, spec, source) : largestPlan(packing, program, slots, spec, source);
  const steps = normalizeSteps(plan.rotationSteps, slots);
  const keyBytes = galoisKeyBytes(params, steps.length);
  if (keyBytes > GALOIS_KEY_BUDGET) {
    throw new HepolyError(`${source}: ${kind} packing needs ${steps.length} Galois keys (${(keyBytes / 2 ** 20).toFixed(0)} MiB at N=${params.polyModulusDegree}), more than a server worker's SEAL heap holds safely. Use smaller --params, fewer samples per pass or a smaller model`);
  }
  const layouts =
    kind === 'sample'
      ? { input: slotLayout(plan.sample!.layouts[program.input]!), output: slotLayout(plan.sample!.layouts[program.output]!) }
      : passLayouts(packing, plan, size(program.inputShape), program.classes);
  return { kind, samplesPerPass: plan.samplesPerPass, plan, rotationSteps: steps, ...layouts };
}

function planOrExplain(packing: Packing, program: HeProgram, slots: number, m: number, spec: string, source: string): PackingPlan {
  try {
    return packing.plan(program, slots, m);
  } catch (e) {
    if (e instanceof HepolyError) throw new HepolyError(`--packing ${spec}: ${source}: ${e.message}`);
    throw e;
  }
}

function largestPlan(packing: Packing, program: HeProgram, slots: number, spec: string, source: string): PackingPlan {
  const sizes = packing.sizes(program, slots, DEFAULT_MAX_M);
  let last: unknown = null;
  for (const m of [...sizes].reverse()) {
    try {
      return packing.plan(program, slots, m);
    } catch (e) {
      if (!(e instanceof HepolyError)) throw e;
      last = e;
    }
  }
  throw new HepolyError(`--packing ${spec}: ${source}: ${last instanceof Error ? last.message : `no size of ${packing.kind} packing fits N=${slots * 2}`}`);
}

/** A sample-packing layout as the client needs it: where each element sits, nothing of the program. */
export function slotLayout(l: Layout): SlotLayout {
  if ((l.run ?? 1) !== 1) throw new Error('internal: exported sample packing has one sample per pass');
  return { shape: l.shape, ciphertexts: l.cts, replicas: l.replicas.map((r) => Array.from(r)) };
}
