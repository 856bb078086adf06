import { HepolyError } from '../util/errors.js';
import { shortPath } from '../util/paths.js';
import { loadOnnxRuntime } from '../util/onnxruntime.js';

type Ort = typeof import('onnxruntime-node');

/** onnxruntime-node, loaded only when an ONNX file must be run (an optional peer dependency: see util/onnxruntime.ts). */
export async function loadOrt(why: string): Promise<Ort> {
  return loadOnnxRuntime(why);
}

export interface OnnxRunOptions {
  /** per-sample shape of `x` (NHWC, hepoly's layout) */
  inputShape: number[];
  /** how the ONNX input wants it */
  layout: 'nchw' | 'nhwc' | 'flat';
  classes: number;
  /** the model has a fixed batch of 1: feed one sample per run */
  batchFixed?: boolean;
  why: string;
}

/** NHWC samples -> NCHW. */
export function toNchw(x: Float32Array, n: number, [h, w, c]: number[]): Float32Array {
  const out = new Float32Array(x.length);
  const per = h * w * c;
  for (let b = 0; b < n; b++) for (let i = 0; i < h * w; i++) for (let ch = 0; ch < c; ch++) out[b * per + ch * h * w + i] = x[b * per + i * c + ch];
  return out;
}

/** Runs an ONNX classifier on hepoly-layout samples with onnxruntime; returns [count, classes] logits. */
export async function runOnnx(file: string, x: Float32Array, count: number, o: OnnxRunOptions): Promise<Float32Array> {
  const ort = await loadOrt(o.why);
  let session: Awaited<ReturnType<Ort['InferenceSession']['create']>>;
  try {
    session = await ort.InferenceSession.create(file);
  } catch (e) {
    throw new HepolyError(`${shortPath(file)}: onnxruntime cannot load it (${(e as Error).message.split('\n')[0]}). Export it again or check the file`);
  }
  const per = o.inputShape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(count * o.classes);
  const batch = o.batchFixed ? 1 : 256;
  try {
    for (let s = 0; s < count; s += batch) {
      const n = Math.min(batch, count - s);
      const part = x.subarray(s * per, (s + n) * per);
      const shape = o.layout === 'nchw' ? [n, o.inputShape[2], o.inputShape[0], o.inputShape[1]] : o.layout === 'nhwc' ? [n, ...o.inputShape] : [n, per];
      const data = o.layout === 'nchw' ? toNchw(part, n, o.inputShape) : Float32Array.from(part);
      const result = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', data, shape) });
      const logits = result[session.outputNames[0]];
      if (logits.dims.length !== 2 || logits.dims[1] !== o.classes) {
        throw new HepolyError(`${shortPath(file)}: onnxruntime gives outputs of shape [${logits.dims.join(', ')}], expected [N, ${o.classes}] logits`);
      }
      out.set(logits.data as Float32Array, s * o.classes);
    }
  } finally {
    await session.release();
  }
  return out;
}
