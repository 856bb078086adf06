import { loadCheckpoint, type Checkpoint } from '../train/checkpoint.js';
import { compileCheckpoint } from '../he/compile.js';
import type { HeProgram } from '../he/program.js';

/**
 * Compiles a checkpoint (a folder, or one already loaded) into the HE program the server runs:
 * affine layers folded, every step's plaintext weights and level cost. Non-polynomial layers are
 * refused with a message that names them.
 */
export function compile(checkpoint: string | Checkpoint): HeProgram {
  const ckpt = typeof checkpoint === 'string' ? loadCheckpoint(checkpoint) : checkpoint;
  return compileCheckpoint(ckpt);
}
