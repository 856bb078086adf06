import { levelsOf } from '../params.js';
import type { ChainPass } from './chain.js';

/** Checker: the chain has a level for every level the program spends (a program cut for client refreshes: each segment's). */
export const checkChainPass: ChainPass = {
  name: 'check-chain',
  run(state) {
    if (!state.params) throw new Error('internal: check-chain runs before choose-params');
    const levels = levelsOf(state.params);
    if (state.program.depth > levels) throw new Error(`internal: the program spends ${state.program.depth} levels, the chain has ${levels}`);
    return { state, note: `depth ${state.program.depth} within the chain's ${levels} levels` };
  },
};
