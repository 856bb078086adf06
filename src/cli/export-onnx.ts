import { HepolyError } from '../util/errors.js';
import { shortPath } from '../util/paths.js';

/** `hepoly export CHECKPOINT --format onnx --out MODEL.onnx` (dispatched from cli/export.ts). */
export async function runExportOnnx(a: { checkpoint: string; out?: string; json?: boolean }): Promise<void> {
  if (!a.out) throw new HepolyError('--out MODEL.onnx: required with --format onnx: the file to write', { exitCode: 2 });
  const [{ loadCheckpoint }, { exportOnnx }] = await Promise.all([import('../train/checkpoint.js'), import('../onnx/export.js')]);
  const ckpt = loadCheckpoint(a.checkpoint);
  const r = exportOnnx(ckpt, a.out);
  console.log(`wrote ${shortPath(r.out)} (${(r.bytes / 1024).toFixed(1)} KiB, ${r.nodes} nodes, opset ${r.opset}, input NCHW with a dynamic batch axis; preprocessing in its metadata)`);
  if (a.json) console.log(JSON.stringify({ onnx: r.out, bytes: r.bytes, nodes: r.nodes, opset: r.opset }));
}
