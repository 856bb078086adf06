import { HEClient } from '../../src/he/client.js';
import { deleteEvaluationKeys, loadEvaluationKeys } from '../../src/he/keys.js';
import type { EvaluationKeys } from '../../src/he/seal-backend.js';
import { SealBackend } from '../../src/he/seal-backend.js';
import type { HeParams } from '../../src/he/params.js';

/** A client, its public evaluation keys (Galois keys for `rotations`) and a SEAL backend on them, all freed after `fn`. */
export async function withSealBackend<T>(params: HeParams, fn: (client: HEClient, be: SealBackend, keys: EvaluationKeys) => Promise<T> | T, rotations: number[] = []): Promise<T> {
  const client = await HEClient.create(params);
  const keys = loadEvaluationKeys(client.ctx, client.publicBundle(rotations));
  const be = new SealBackend(client.ctx, keys);
  try {
    return await fn(client, be, keys);
  } finally {
    be.delete();
    deleteEvaluationKeys(keys);
    client.delete();
  }
}
