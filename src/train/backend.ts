import * as tf from '@tensorflow/tfjs-core';
// the union package's node bundle is what registers tfjs-core's gradient functions
import '@tensorflow/tfjs';
import { HepolyError } from '../util/errors.js';

/**
 * Picks the fastest tfjs backend that loads here: tfjs-node-gpu, then tfjs-node (optional
 * dependencies that download libtensorflow at install, so they exist only on some machines),
 * then WebAssembly (XNNPACK), then the pure-JS cpu backend as a last resort.
 */

export type BackendName = 'tensorflow-gpu' | 'tensorflow' | 'wasm' | 'cpu';
export const BACKENDS: BackendName[] = ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'];

let active: BackendName | null = null;

async function tryNative(pkg: string): Promise<boolean> {
  try {
    await import(pkg);
    return tf.findBackend('tensorflow') !== undefined && (await tf.setBackend('tensorflow'));
  } catch {
    return false;
  }
}

async function tryWasm(): Promise<boolean> {
  try {
    await import('@tensorflow/tfjs-backend-wasm');
    const { registerWasmKernels, wasmThreadsWanted, withWasmThreads } = await import('./kernels/index.js');
    const threads = wasmThreadsWanted();
    const start = () => tf.setBackend('wasm');
    // the threaded build for its shared memory; XNNPACK's own pool stays at one thread
    if (!(threads > 1 ? await withWasmThreads(1, start) : await start())) return false;
    await tf.ready();
    registerWasmKernels(threads);
    return true;
  } catch {
    return false;
  }
}

async function tryCpu(): Promise<boolean> {
  await import('@tensorflow/tfjs-backend-cpu');
  const { registerCpuKernels } = await import('./kernels/index.js');
  registerCpuKernels();
  return tf.setBackend('cpu');
}

const loaders: Record<BackendName, () => Promise<boolean>> = {
  'tensorflow-gpu': () => tryNative('@tensorflow/tfjs-node-gpu'),
  tensorflow: () => tryNative('@tensorflow/tfjs-node'),
  wasm: tryWasm,
  cpu: tryCpu,
};

/**
 * Initializes tfjs once per process. `forced` names one backend and fails loudly if it
 * cannot load; otherwise the first that loads wins. HEPOLY_BACKEND sets `forced` too.
 */
export async function initBackend(forced?: string): Promise<BackendName> {
  const want = forced ?? process.env.HEPOLY_BACKEND;
  if (active && (!want || want === active)) {
    // other tfjs code in this process (a caller's own, a test) may have switched backends since
    const registered = active.startsWith('tensorflow') ? 'tensorflow' : active;
    if (tf.getBackend() !== registered) await tf.setBackend(registered);
    return active;
  }
  if (want) {
    // blame what the user actually set: the flag, or the environment variable
    const source = forced !== undefined ? '--backend' : 'HEPOLY_BACKEND';
    const omit = forced !== undefined ? 'Omit --backend' : 'Unset HEPOLY_BACKEND';
    if (!BACKENDS.includes(want as BackendName)) {
      throw new HepolyError(`${source}: expected one of ${BACKENDS.join(', ')}, found "${want}"`, { exitCode: forced !== undefined ? 2 : 1 });
    }
    if (!(await loaders[want as BackendName]())) {
      const hint =
        want === 'tensorflow' || want === 'tensorflow-gpu'
          ? ` Install it with \`npm install @tensorflow/tfjs-node${want === 'tensorflow-gpu' ? '-gpu' : ''}@4.22.0\` (its install downloads libtensorflow).`
          : '';
      throw new HepolyError(`${source} ${want}: this backend does not load on this machine.${hint} ${omit} to pick the fastest one that loads`);
    }
    active = want as BackendName;
    return active;
  }
  for (const name of BACKENDS) {
    if (await loaders[name]()) {
      active = name;
      return name;
    }
  }
  throw new HepolyError('no tfjs backend could be loaded (not even cpu): reinstall with `npm install`');
}
