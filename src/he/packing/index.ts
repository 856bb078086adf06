import type { Packing, PackingKind } from './packing.js';
import { batchPacking } from './batch-packing.js';
import { samplePacking } from './sample-packing.js';
import { interleavedPacking, stackedPacking } from './stacked-packing.js';
import { tokenPacking } from './token-packing.js';

/**
 * Every packing, in the order the search lists them (ties keep this order). Adding one:
 * docs/packings.md.
 */
export const PACKINGS: readonly Packing[] = [batchPacking, samplePacking, stackedPacking, interleavedPacking, tokenPacking];

export function packingOf(kind: PackingKind): Packing {
  const p = PACKINGS.find((x) => x.kind === kind);
  if (!p) throw new Error(`internal: no packing ${kind} is registered (src/he/packing/index.ts)`);
  return p;
}

export * from './packing.js';
