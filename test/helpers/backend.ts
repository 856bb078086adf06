import { BACKENDS, type BackendName, initBackend } from '../../src/train/backend.js';

let fastest: BackendName | null = null;

/**
 * Puts tfjs back on the backend an unforced run gets here (HEPOLY_BACKEND, else the fastest that
 * loads). `initBackend('cpu')`, which several deploy and HE tests force for bitwise-stable
 * plaintext references, is process-wide, and mocha's parallel mode runs many files in one worker:
 * without this as the `after` of each suite that forces cpu, every later file in that worker
 * trained on the pure-JS backend (the fmnist-cnn-kd teacher check: 323 s instead of 1.4 s).
 */
export async function restoreFastestBackend(): Promise<void> {
  if (process.env.HEPOLY_BACKEND) {
    await initBackend(process.env.HEPOLY_BACKEND);
    return;
  }
  if (fastest) {
    await initBackend(fastest);
    return;
  }
  for (const name of BACKENDS) {
    try {
      fastest = await initBackend(name);
      return;
    } catch {
      // not on this machine: try the next
    }
  }
}
