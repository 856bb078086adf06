import type { CkksBackend } from '../backend.js';
import type { HeProgram, Step } from '../program.js';
import type { PackingKind } from '../../ops/types.js';
import type { SamplePlan } from './sample.js';
import type { StackedProgram } from '../tiles/stacked.js';
import type { TileLayout } from '../tiles/tile-tensor.js';
import type { TokenFold } from './token-fold.js';
import { HepolyError } from '../../util/errors.js';

/**
 * One interface for every way of laying samples out in CKKS slots (docs/packings.md). Each
 * packing is one object in `src/he/packing/index.ts`; the server's workers, `--packing auto`,
 * `he-plan` and `he-validate` loop over that registry instead of naming packings.
 */

/** The packing kinds, as the op registry's table names them (one definition: src/ops/types.ts). */
export { PACKING_KINDS, type PackingKind } from '../../ops/types.js';

/**
 * Which evaluator the server's worker threads run: `batch`, the program split into stages of
 * channel groups spread over the threads; `sample`, one pass per request (the diagonal method,
 * which stacked and interleaved packing reuse on their M-sample programs).
 */
export type EvaluatorKind = 'batch' | 'sample';

/** A packing chosen for a program at a ring: what the client packs and the server evaluates. */
export interface PackingPlan {
  kind: PackingKind;
  /** the program the server evaluates (stacked and interleaved: the M-sample program) */
  program: HeProgram;
  slots: number;
  /** samples one pass serves (batch: the slot count) */
  samplesPerPass: number;
  /** the diagonal-method plan of `program` (null for batch) */
  sample: SamplePlan | null;
  /** stacked and interleaved: the M-sample rewrite and how to (un)stack samples */
  stacked: StackedProgram | null;
  /** the rotations the server needs Galois keys for */
  rotationSteps: number[];
  /** token packing: the folded program's layout (what the client packs by) */
  fold?: TokenFold;
}

export interface RunOptions {
  /** batch: split channel groups as a server with this many threads would (counts depend on it) */
  workers?: number;
  /** bytes of accumulators a batch stage group may hold */
  memoryBudget?: number;
}

/** One packing's evaluator on one backend: set up once (diagonals encoded), then pass after pass. */
export interface PassRunner<C> {
  /** input ciphertexts of one pass (the caller's) -> output ciphertexts (the caller frees them) */
  run(inputs: (C | null)[]): (C | null)[];
  delete(): void;
}

export interface Packing {
  kind: PackingKind;
  evaluator: EvaluatorKind;
  /** one line for docs and `--trace`: where a sample's values go */
  layout: string;
  /**
   * Stacked and interleaved: a worker's SEAL heap grows with M (more diagonals encoded), so
   * the search stops at the first M whose predicted heap passes the cap.
   */
  heapGrowsWithM: boolean;
  /** true, or why this packing cannot evaluate this step of the program */
  supports(step: Step, program: HeProgram): true | string;
  /** the samples per pass the search tries at `slots` (ascending), at most `limit` for M-sample packings */
  sizes(program: HeProgram, slots: number, limit: number): number[];
  /** the plan for `m` samples per pass; a HepolyError says why it cannot be made */
  plan(program: HeProgram, slots: number, m: number): PackingPlan;
  /** the server side: the evaluator of a plan (a client-only sample plan is refused) */
  run<C, P>(plan: PackingPlan, be: CkksBackend<C, P>, opts?: RunOptions): PassRunner<C>;
  /** the client side: `count` samples (row-major, one sample's input after another) -> one pass's slot vectors */
  pack(plan: PackingPlan, x: ArrayLike<number>, count: number): Float64Array[];
  /** the client side: one pass's decrypted outputs -> `count` x classes logits */
  unpack(plan: PackingPlan, outputs: (Float64Array | null)[], count: number): Float64Array;
  /** the input tensor as tiles ([samples, features]; interleaved [features, samples]), for he-plan's table */
  tiles(plan: PackingPlan): TileLayout;
}

/** A packing's name for one plan: `batch`, `sample`, `stacked x4`. */
export function planName(plan: PackingPlan): string {
  return plan.stacked ? `${plan.kind} x${plan.samplesPerPass}` : plan.kind;
}

/** The first step the packing cannot evaluate, with why; null when it runs the whole program. */
export function firstUnsupported(packing: Packing, program: HeProgram): string | null {
  for (const step of program.steps) {
    const ok = packing.supports(step, program);
    if (ok !== true) return `${program.tensors[step.out].label}: ${ok}`;
  }
  return null;
}

/** Throws, naming the first step the packing cannot evaluate and why. */
export function refuseUnsupported(packing: Packing, program: HeProgram): void {
  const why = firstUnsupported(packing, program);
  if (why) throw new HepolyError(`${packing.kind} packing does not support ${why}`);
}
