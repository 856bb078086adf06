import { HepolyError } from '../util/errors.js';

/**
 * The binary body of every message: u32 header length | JSON header | per blob, u32 length and
 * bytes. Ciphertexts, keys and masked vectors travel as blobs; the header says what they are.
 */
export interface Message {
  header: Record<string, unknown>;
  blobs: Uint8Array[];
}

export function encodeMessage(m: Message): Buffer {
  const head = Buffer.from(JSON.stringify(m.header));
  const parts: Buffer[] = [u32(head.length), head, u32(m.blobs.length)];
  for (const b of m.blobs) parts.push(u32(b.length), Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  return Buffer.concat(parts);
}

export function decodeMessage(buf: Buffer): Message {
  try {
    let off = 0;
    const read = (n: number): Buffer => {
      if (off + n > buf.length) throw new Error('truncated');
      const s = buf.subarray(off, off + n);
      off += n;
      return s;
    };
    const headLen = read(4).readUInt32LE(0);
    const header = JSON.parse(read(headLen).toString('utf8')) as Record<string, unknown>;
    const count = read(4).readUInt32LE(0);
    const blobs: Uint8Array[] = [];
    for (let i = 0; i < count; i++) blobs.push(new Uint8Array(read(read(4).readUInt32LE(0))));
    return { header, blobs };
  } catch (e) {
    throw new HepolyError(`a federated message could not be decoded (${(e as Error).message}): the peer is not a hepoly federate process of the same version`, { cause: e });
  }
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n, 0);
  return b;
}

export function u32Bytes(v: Uint32Array): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

export function bytesU32(b: Uint8Array): Uint32Array {
  return new Uint32Array(b.slice().buffer);
}

export function f64Bytes(v: Float64Array): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

export function bytesF64(b: Uint8Array): Float64Array {
  return new Float64Array(b.slice().buffer);
}
