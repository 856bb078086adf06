import type { HeProgram } from '../he/program.js';
import { HepolyError } from '../util/errors.js';

/**
 * The compiled program on disk: its structure as JSON, its typed arrays (kernels, biases,
 * folded factors: the plaintext weights as the server uses them) in one binary file. A typed
 * array becomes {"$typed": "Float64Array", "offset": bytes, "length": elements} in the JSON,
 * its bytes copied little-endian at an 8-byte-aligned offset, so decoding is a view, not a
 * parse. The codec knows nothing of the program's fields: a new op's arrays travel as they are.
 */

const TYPED = {
  Float64Array,
  Float32Array,
  Int32Array,
  Uint32Array,
  Int16Array,
  Uint16Array,
  Int8Array,
  Uint8Array,
} as const;
type TypedName = keyof typeof TYPED;
type AnyTyped = InstanceType<(typeof TYPED)[TypedName]>;

interface TypedRef {
  $typed: TypedName;
  offset: number;
  length: number;
}

export function encodeProgram(p: HeProgram): { json: string; bin: Uint8Array } {
  const chunks: { offset: number; bytes: Uint8Array }[] = [];
  let size = 0;
  const json = JSON.stringify(p, (_key, value: unknown) => {
    if (!ArrayBuffer.isView(value) || value instanceof DataView) return value;
    const name = value.constructor.name as TypedName;
    if (!(name in TYPED)) throw new Error(`internal: the program holds a ${name}, which the artifact codec cannot store`);
    size = Math.ceil(size / 8) * 8;
    const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    chunks.push({ offset: size, bytes });
    const ref: TypedRef = { $typed: name, offset: size, length: (value as AnyTyped).length };
    size += bytes.length;
    return ref;
  });
  const bin = new Uint8Array(size);
  for (const c of chunks) bin.set(c.bytes, c.offset);
  return { json, bin };
}

export function decodeProgram(json: string, bin: Uint8Array, where: string): HeProgram {
  // one aligned copy, so every typed array below is a view of it
  const buffer = new ArrayBuffer(bin.length);
  new Uint8Array(buffer).set(bin);
  try {
    return JSON.parse(json, (_key, value: unknown) => {
      if (!value || typeof value !== 'object' || !('$typed' in value)) return value;
      const ref = value as TypedRef;
      const T = TYPED[ref.$typed];
      if (!T || ref.offset % 8 || ref.offset + ref.length * T.BYTES_PER_ELEMENT > buffer.byteLength) {
        throw new Error(`array at byte ${ref.offset} lies outside program.bin`);
      }
      return new T(buffer, ref.offset, ref.length);
    }) as HeProgram;
  } catch (e) {
    throw new HepolyError(`${where}: program.json / program.bin do not decode (${(e as Error).message}). Export the artifact again with \`hepoly export\``);
  }
}
