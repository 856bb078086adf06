import { HepolyError } from './errors.js';

/** The onnxruntime-node module, typed as its own declarations describe it. */
export type OnnxRuntime = typeof import('onnxruntime-node');

/**
 * The install line a message gives. onnxruntime-node's install script downloads CUDA libraries
 * on linux/x64 unless told not to; its documented switch, read from this environment variable,
 * skips that (hepoly runs ONNX models on the CPU runtime the package ships).
 */
export const ONNXRUNTIME_INSTALL = 'ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@^1.30.0';

/**
 * Loads onnxruntime-node on first use. It is an optional peer dependency: only ONNX teachers and
 * ONNX import need it, and a plain `npm install hepoly` must not run its CUDA download, so it is
 * not installed with hepoly. `where` names the recipe field or file that asked for it.
 */
export async function loadOnnxRuntime(where: string): Promise<OnnxRuntime> {
  try {
    return await import('onnxruntime-node');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err?.code === 'ERR_MODULE_NOT_FOUND' && /onnxruntime-node/.test(err.message)) {
      throw new HepolyError(
        `${where}: ONNX models run on onnxruntime-node, an optional dependency of hepoly that is not installed here. ` +
          `Install it beside hepoly with \`${ONNXRUNTIME_INSTALL}\` (the variable is onnxruntime-node's own switch that skips its CUDA download), or use a hepoly checkpoint instead`,
        { cause: e },
      );
    }
    throw new HepolyError(
      `${where}: onnxruntime-node is installed but does not load (${String(err?.message ?? e).split('\n')[0]}). Reinstall it with \`${ONNXRUNTIME_INSTALL}\``,
      { cause: e },
    );
  }
}
