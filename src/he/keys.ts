import type { PublicBundle } from './client.js';
import type { EvaluationKeys } from './seal-backend.js';
import type { CkksContext } from './seal.js';

/** Rebuilds the server's (public) keys from the client's bytes in this thread's SEAL instance. */
export function loadEvaluationKeys(ctx: CkksContext, bundle: Pick<PublicBundle, 'publicKey' | 'relinKeys' | 'galoisKeys'>): EvaluationKeys {
  const seal = ctx.seal;
  const publicKey = seal.PublicKey();
  publicKey.loadArray(ctx.context, bundle.publicKey);
  const relinKeys = seal.RelinKeys();
  relinKeys.loadArray(ctx.context, bundle.relinKeys);
  let galoisKeys = null;
  if (bundle.galoisKeys) {
    galoisKeys = seal.GaloisKeys();
    galoisKeys.loadArray(ctx.context, bundle.galoisKeys);
  }
  return { publicKey, relinKeys, galoisKeys };
}

export function deleteEvaluationKeys(k: EvaluationKeys): void {
  k.publicKey.delete();
  k.relinKeys.delete();
  k.galoisKeys?.delete();
}
