import type { HeParams } from '../params.js';
import type { HeProgram } from '../program.js';
import type { Candidate } from '../tiles/optimizer.js';

/**
 * The passes after the graph is lowered (src/he/compile.ts's list): from the program to a
 * chain of primes and the packings that fit it. Each is one small file, run in order and
 * reported by name with what it did (`he-plan --trace`). Parameters come before packing:
 * a packing's layouts depend on the slots, N/2, of the ring the parameters choose.
 */

export interface ChainState {
  program: HeProgram;
  /** held-out inputs (row-major) the scales pass evaluates the plaintext program on */
  inputs: Float32Array;
  count: number;
  /** set by `scales`: the largest value q0 must hold above the scale, with its margin */
  maxAbs: number | null;
  /** set by `choose-params` */
  params: HeParams | null;
  /** `--refresh client` asks `segment-refresh` to cut the program to the chain; absent or 'none': no cut */
  refresh?: 'none' | 'client';
  /** set by `stack-interleave`: every registered packing's points, costed by a dry run */
  candidates: Candidate[] | null;
}

export interface ChainPass {
  name: string;
  run(state: ChainState): { state: ChainState; note: string };
}

/** Runs the passes in order; `trace` gets `pass NAME: what it did` for each. */
export function runChainPasses(passes: readonly ChainPass[], state: ChainState, trace?: (line: string) => void): { state: ChainState; notes: { pass: string; note: string }[] } {
  const notes: { pass: string; note: string }[] = [];
  for (const pass of passes) {
    const r = pass.run(state);
    state = r.state;
    notes.push({ pass: pass.name, note: r.note });
    trace?.(`pass ${pass.name}: ${r.note}`);
  }
  return { state, notes };
}
