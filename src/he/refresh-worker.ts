import { parentPort, workerData } from 'node:worker_threads';
import { CkksContext, loadSeal } from './seal.js';
import { CkksKeyHolder, keygenFromSecretKey } from './key-holder.js';
import type { HeParams } from './params.js';

/** One thread of RefreshPool (src/he/refresh-pool.ts): the client's key, decrypt and encrypt again. */
const { params, secretKey } = workerData as { params: HeParams; secretKey: Uint8Array };
const seal = await loadSeal();
const ctx = CkksContext.create(seal, params);
const keys = new CkksKeyHolder(seal, ctx.context, keygenFromSecretKey(seal, ctx.context, secretKey), 2 ** params.scaleBits);

parentPort!.on('message', (m: { id: number; cts: Uint8Array[]; values: boolean }) => {
  try {
    const decrypted = m.cts.map((b) => keys.decryptSlots(b));
    const fresh = decrypted.map((v) => keys.encryptSlots(v));
    parentPort!.postMessage({ id: m.id, fresh, values: m.values ? decrypted : null });
  } catch (e) {
    parentPort!.postMessage({ id: m.id, error: (e as Error).message });
  }
});
