import type { Worker } from 'node:worker_threads';
import { spawnModuleWorker } from '../util/module-worker.js';
import type { HeParams } from './params.js';

/**
 * The data owner's side of `--refresh client` on several threads. A refresh is the client
 * decrypting and re-encrypting thousands of ciphertexts while the server's workers wait, so on
 * one thread it was over half of a transformer's evaluation. Each thread of this pool holds a
 * copy of the secret key: they are the owner's own threads, in its own process, and nothing
 * they hold goes to the server (the server's workers are other threads, fed by HEServer).
 */
export class RefreshPool {
  private nextId = 0;
  /** a thread that died: every later refresh fails with it instead of waiting for an answer */
  private failed: Error | null = null;
  private closing = false;
  private readonly pending = new Map<number, { resolve: (r: RefreshReply) => void; reject: (e: Error) => void }>();

  private constructor(private readonly workers: Worker[]) {
    for (const w of workers) {
      w.on('message', (m: RefreshReply & { id: number; error?: string }) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.error) p?.reject(new Error(`client refresh thread: ${m.error}`));
        else p?.resolve(m);
      });
      const fail = (e: Error) => {
        this.failed ??= e;
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
      };
      w.on('error', fail);
      w.on('exit', (code) => {
        if (!this.closing) fail(new Error(`client refresh thread exited (code ${code})`));
      });
    }
  }

  /** `threads` workers, each with the client's parameters and secret key (bytes, copied to the thread). */
  static start(params: HeParams, secretKey: Uint8Array, threads: number): RefreshPool {
    const n = Math.max(1, Math.floor(threads));
    return new RefreshPool(Array.from({ length: n }, () => spawn({ params, secretKey })));
  }

  /**
   * Every ciphertext decrypted and encrypted again at the top level, in order, split over the
   * threads; with `values`, the decrypted slots too (for a client that checks them).
   */
  async refresh(cts: Uint8Array[], values = false): Promise<RefreshReply> {
    if (this.failed) throw this.failed;
    const per = Math.ceil(cts.length / this.workers.length);
    const parts = await Promise.all(
      this.workers.map((w, k) => {
        const chunk = cts.slice(k * per, (k + 1) * per);
        if (!chunk.length) return Promise.resolve({ fresh: [], values: values ? [] : null } as RefreshReply);
        const id = this.nextId++;
        return new Promise<RefreshReply>((resolve, reject) => {
          this.pending.set(id, { resolve, reject });
          w.postMessage({ id, cts: chunk, values });
        });
      }),
    );
    return { fresh: parts.flatMap((p) => p.fresh), values: values ? parts.flatMap((p) => p.values ?? []) : null };
  }

  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

export interface RefreshReply {
  fresh: Uint8Array[];
  values: Float64Array[] | null;
}

function spawn(workerData: { params: HeParams; secretKey: Uint8Array }): Worker {
  return spawnModuleWorker(import.meta.url, 'refresh-worker', { workerData });
}
