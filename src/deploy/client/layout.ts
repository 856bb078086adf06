import { HepolyError } from '../../util/errors.js';
import type { SlotLayout } from '../artifact-format.js';

/**
 * Slot placement on the client: element e of a tensor goes to global slot replicas[r][e]
 * (ciphertext floor(g / slots), slot g mod slots) for every replica r, and is read back from
 * replica 0. The same rule as the sample packing's packSample / unpackTensor, from the
 * exported layout alone (the client artifact has no program to plan from).
 */

export function packInput(layout: SlotLayout, slots: number, x: ArrayLike<number>): Float64Array[] {
  const elements = layout.replicas[0]?.length ?? 0;
  if (x.length !== elements) {
    throw new HepolyError(`input: a sample has ${x.length} values, the model takes ${elements} (shape [${layout.shape.join(', ')}])`);
  }
  const vecs = Array.from({ length: layout.ciphertexts }, () => new Float64Array(slots));
  for (const rep of layout.replicas) {
    for (let e = 0; e < rep.length; e++) {
      const g = rep[e];
      if (g >= 0) vecs[Math.floor(g / slots)][g % slots] = x[e];
    }
  }
  return vecs;
}

export function unpackOutput(layout: SlotLayout, slots: number, decrypted: Float64Array[]): Float64Array {
  const rep = layout.replicas[0];
  const out = new Float64Array(rep.length);
  for (let e = 0; e < rep.length; e++) {
    const g = rep[e];
    if (g >= 0) out[e] = decrypted[Math.floor(g / slots)][g % slots];
  }
  return out;
}
