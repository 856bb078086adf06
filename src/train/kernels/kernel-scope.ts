/**
 * Temporaries of a hepoly kernel on the wasm backend: what it runs through the backend's
 * registered kernels and what it allocates, released together at the end.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { NamedAttrMap, NamedTensorInfoMap, TensorInfo } from '@tensorflow/tfjs-core';

const BACKEND = 'wasm';

/** The parts of the wasm backend a scope uses. */
export interface ScopeBackend {
  disposeData(dataId: object, force?: boolean): boolean;
}

/**
 * Runs the wasm backend's registered kernels and remembers every result so
 * intermediates can be released at the end.
 */
export class KernelScope {
  private readonly temps: TensorInfo[] = [];

  constructor(protected readonly backend: ScopeBackend) {}

  run(kernelName: string, inputs: NamedTensorInfoMap, attrs: NamedAttrMap = {}): TensorInfo {
    const config = tf.getKernel(kernelName, BACKEND);
    if (config == null) {
      throw new Error(`kernel-scope: kernel '${kernelName}' is not registered for '${BACKEND}'`);
    }
    const out = config.kernelFunc({ inputs, backend: this.backend, attrs });
    if (Array.isArray(out)) {
      throw new Error(`kernel-scope: kernel '${kernelName}' returned several outputs`);
    }
    this.temps.push(out);
    return out;
  }

  transpose(x: TensorInfo, perm: number[]): TensorInfo {
    return this.run(tf.Transpose, { x }, { perm });
  }

  reshape(x: TensorInfo, shape: number[]): TensorInfo {
    return this.run(tf.Reshape, { x }, { shape });
  }

  slice(x: TensorInfo, begin: number[], size: number[]): TensorInfo {
    return this.run(tf.Slice, { x }, { begin, size });
  }

  /** Tracks a tensor made outside run() (e.g. backend.makeOutput) for release. */
  adopt(t: TensorInfo): TensorInfo {
    this.temps.push(t);
    return t;
  }

  /** Returns `t` as the kernel's output: it is not released by dispose(). */
  keep(t: TensorInfo): TensorInfo {
    const i = this.temps.lastIndexOf(t);
    if (i >= 0) this.temps.splice(i, 1);
    return t;
  }

  /** Releases every intermediate (reshapes share data via refCount). */
  dispose(): void {
    for (const t of this.temps) this.backend.disposeData(t.dataId);
    this.temps.length = 0;
  }
}
