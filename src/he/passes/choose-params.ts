import { chooseParams, describeParams } from '../params.js';
import type { ChainPass } from './chain.js';

/** Parameters: the smallest 128-bit-secure ring whose chain holds the program's depth (params.ts). */
export const chooseParamsPass: ChainPass = {
  name: 'choose-params',
  run(state) {
    if (state.maxAbs === null) throw new Error('internal: choose-params runs before scales');
    const params = chooseParams({ depth: state.program.depth, maxAbs: state.maxAbs });
    return { state: { ...state, params }, note: `${describeParams(params)} for depth ${state.program.depth}` };
  },
};
