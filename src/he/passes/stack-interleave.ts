import { type Candidate, candidates } from '../tiles/optimizer.js';
import { packingOf } from '../packing/index.js';
import type { ChainPass } from './chain.js';

/**
 * Packings: every registered packing (src/he/packing/index.ts) at the chosen ring and the next,
 * stacked and interleaved for M = 2, 4, ... while they plan and fit a worker's heap, each
 * costed by a dry run of its evaluator (tiles/optimizer.ts).
 */
export const stackInterleavePass: ChainPass = {
  name: 'stack-interleave',
  run(state) {
    if (!state.params) throw new Error('internal: stack-interleave runs before choose-params');
    const cands = candidates(state.program, state.params);
    const byKind = new Map<string, number[]>();
    for (const c of cands) byKind.set(c.kind, [...(byKind.get(c.kind) ?? []), c.shape.samplesPerPass]);
    const note = [...byKind].map(([k, ms]) => (packingOf(k as Candidate['kind']).heapGrowsWithM ? `${k} x${Math.min(...ms)}..x${Math.max(...ms)}` : k) + ` (${ms.length})`).join(', ');
    return { state: { ...state, candidates: cands }, note: `${cands.length} candidates: ${note}` };
  },
};
