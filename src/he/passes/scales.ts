import { calibrate } from '../validate.js';
import type { ChainPass } from './chain.js';

/**
 * Scales: how large the values are that the last prime q0 must hold above the scale, from the
 * plaintext program on held-out samples (every partial sum of the last level's linear steps,
 * with a 4x margin: `calibrate` in validate.ts). The scale itself is CKKS's: every rescale
 * divides by a prime of about the scale, so each tensor comes back to it.
 */
export const scalesPass: ChainPass = {
  name: 'scales',
  run(state) {
    const used = Math.min(state.count, 32);
    const maxAbs = calibrate(state.program, state.inputs, used);
    return { state: { ...state, maxAbs }, note: `largest last-level value x4 = ${maxAbs.toPrecision(3)} on ${used} held-out samples: q0 holds ${Math.ceil(Math.log2(maxAbs))} bits above the scale` };
  },
};
