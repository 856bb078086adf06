import { HepolyError } from '../util/errors.js';

/**
 * The wire format of every binary body (keys, ciphertexts): ciphertexts go as raw bytes, never
 * as base64 JSON, and several go in one body. Layout, all integers little-endian u32:
 *
 *   "HPF1" | count | length_0 | bytes_0 | length_1 | bytes_1 | ...
 *
 * Browser-safe (Uint8Array and DataView only): the same module frames requests in Node and in
 * a page.
 */

const MAGIC = [0x48, 0x50, 0x46, 0x31]; // "HPF1"
/** a body claiming more parts than this is malformed (a key upload has 3, a request a few hundred) */
const MAX_PARTS = 1 << 20;

export function encodeFrames(parts: Uint8Array[]): Uint8Array {
  const total = 8 + parts.reduce((a, p) => a + 4 + p.length, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  view.setUint32(4, parts.length, true);
  let off = 8;
  for (const p of parts) {
    view.setUint32(off, p.length, true);
    out.set(p, off + 4);
    off += 4 + p.length;
  }
  return out;
}

/** Splits a framed body; the parts are views into `bytes`. `what` names the body in errors. */
export function decodeFrames(bytes: Uint8Array, what: string): Uint8Array[] {
  const bad = (why: string) =>
    new HepolyError(`${what}: not a hepoly framed body (${why}). Send "HPF1", a u32 part count and u32-length-prefixed parts (src/deploy/framing.ts)`);
  if (bytes.length < 8 || MAGIC.some((b, i) => bytes[i] !== b)) throw bad('no HPF1 header');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(4, true);
  if (count > MAX_PARTS) throw bad(`${count} parts`);
  const parts: Uint8Array[] = [];
  let off = 8;
  for (let k = 0; k < count; k++) {
    if (off + 4 > bytes.length) throw bad(`part ${k} has no length`);
    const len = view.getUint32(off, true);
    if (off + 4 + len > bytes.length) throw bad(`part ${k} claims ${len} bytes, ${bytes.length - off - 4} remain`);
    parts.push(bytes.subarray(off + 4, off + 4 + len));
    off += 4 + len;
  }
  if (off !== bytes.length) throw bad(`${bytes.length - off} bytes after the last part`);
  return parts;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A JSON part (request and response metadata ride as the first part). */
export function jsonPart(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value));
}

export function parseJsonPart(part: Uint8Array | undefined, what: string): unknown {
  if (!part) throw new HepolyError(`${what}: the first part must be a JSON object`);
  try {
    return JSON.parse(decoder.decode(part));
  } catch (e) {
    throw new HepolyError(`${what}: the first part is not JSON (${(e as Error).message})`);
  }
}
