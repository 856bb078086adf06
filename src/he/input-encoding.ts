import { HepolyError } from '../util/errors.js';

/**
 * How the client turns a sample into the program's input tensor before encrypting it (the
 * compiler decides, src/he/lower.ts; he-validate and the deployed client apply it alike).
 * `one-hot`: token ids [T] become rows of 0/1 [T, vocab], so an embedding is a plaintext product.
 */
export type InputEncoding = { kind: 'one-hot'; vocab: number };

export function encodeInput(e: InputEncoding | undefined, x: ArrayLike<number>, where = 'input'): Float64Array {
  if (!e) return Float64Array.from(x);
  const out = new Float64Array(x.length * e.vocab);
  for (let t = 0; t < x.length; t++) {
    const id = x[t];
    if (!Number.isInteger(id) || id < 0 || id >= e.vocab) throw new HepolyError(`${where}: token ${t} is ${id}, expected a token id in 0..${e.vocab - 1} (the model's vocabulary)`);
    out[t * e.vocab + id] = 1;
  }
  return out;
}
