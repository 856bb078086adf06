import { registerOp } from './registry.js';
import type { OpDef } from './types.js';
import { denseOp } from './dense.js';
import { conv2dOp } from './conv2d.js';
import { activationOp } from './activation.js';
import { avgpoolOp, globalAvgpoolOp, maxpoolOp } from './pooling.js';
import { batchnormOp } from './batchnorm.js';
import { addOp, flattenOp, padOp } from './structure.js';
import { attentionOp, embeddingOp, layernormOp, patchifyOp, posEmbeddingOp, seqPoolOp, tokenDenseOp } from './sequence.js';

/**
 * Every op hepoly ships, in one list (as tfjs collects its kernel configs): adding an op is
 * one file in src/ops/ and one line here. Registration checks each definition's faces.
 */
export const SHIPPED_OPS: OpDef[] = [
  denseOp,
  conv2dOp,
  activationOp,
  avgpoolOp,
  maxpoolOp,
  globalAvgpoolOp,
  batchnormOp,
  flattenOp,
  padOp,
  addOp,
  patchifyOp,
  embeddingOp,
  posEmbeddingOp,
  tokenDenseOp,
  attentionOp,
  layernormOp,
  seqPoolOp,
] as unknown as OpDef[];

for (const def of SHIPPED_OPS) registerOp(def);

export { registerOp, getOp, opOf, allOps } from './registry.js';
export * from './types.js';
