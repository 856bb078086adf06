import { loadSeal, type SecretKey } from '../../src/he/seal.js';
import { type HeapFindings, walkHeap } from './heap-walk.js';

/**
 * The key-separation test's checker: given byte strings (from worker messages, a server's
 * heap, an evaluator's inputs), says which of them holds the client's secret key, in any of the
 * forms SEAL writes it (uncompressed, zlib, zstd: compression is deterministic, so the same key
 * gives the same bytes), whole or as a piece anywhere inside a larger buffer.
 *
 * Byte strings are never loaded into SEAL to find out: loading arbitrary bytes (a ciphertext,
 * a Galois key) as a SecretKey corrupted the wasm heap ("memory access out of bounds" in the
 * next delete), so the check compares bytes only.
 */

export interface ByteString {
  path: string;
  bytes: Uint8Array;
}

/** pieces of each serialized form searched for, and their length in bytes */
const WINDOWS = 4;
const WINDOW_BYTES = 48;

export class SecretKeyDetector {
  private constructor(private readonly windows: { form: string; bytes: Buffer }[]) {}

  /** `clientSecretKey`: the client's key as node-seal's wrapper (read by `secretKeyOf`). */
  static async create(clientSecretKey: SecretKey): Promise<SecretKeyDetector> {
    const seal = await loadSeal();
    const windows: { form: string; bytes: Buffer }[] = [];
    for (const form of ['none', 'zlib', 'zstd'] as const) {
      const blob = clientSecretKey.saveArray(seal.ComprModeType[form]);
      // pieces from the body, past the 16-byte header and the parms id: the uncompressed
      // coefficients are in NTT form and compressed bytes look random, so none of them occurs
      // in other data by chance
      for (let k = 1; k <= WINDOWS; k++) {
        const at = Math.floor((blob.length * k) / (WINDOWS + 1));
        windows.push({ form: form === 'none' ? 'uncompressed' : form, bytes: Buffer.from(blob.subarray(at, at + WINDOW_BYTES)) });
      }
    }
    return new SecretKeyDetector(windows);
  }

  /** Why `bytes` holds the client's secret key, or null when it does not. */
  check(bytes: Uint8Array): string | null {
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (const w of this.windows) {
      const at = buf.indexOf(w.bytes);
      if (at >= 0) return `holds the client's secret key (${w.form}) around byte ${at}`;
    }
    return null;
  }

  /** Every byte string whose check fails, with the reason. */
  findings(strings: ByteString[]): string[] {
    const out: string[] = [];
    for (const s of strings) {
      const why = this.check(s.bytes);
      if (why) out.push(`${s.path} (${s.bytes.length} bytes) ${why}`);
    }
    return out;
  }
}

/**
 * Every byte string in structured data (what postMessage can carry): typed arrays and
 * DataViews (their bytes), ArrayBuffers and SharedArrayBuffers (whole), strings (UTF-8, and
 * decoded when they look like base64 or hex), arrays of byte values; walked through objects,
 * arrays, Maps and Sets.
 */
export function byteStringsOf(root: unknown, rootPath = 'message'): ByteString[] {
  const out: ByteString[] = [];
  const seen = new Set<unknown>();
  const stack: { v: unknown; path: string }[] = [{ v: root, path: rootPath }];
  while (stack.length) {
    const { v, path } = stack.pop()!;
    if (typeof v === 'string') {
      out.push(...stringBytes(v, path));
      continue;
    }
    if (v === null || typeof v !== 'object' || seen.has(v)) continue;
    seen.add(v);
    const bin = binaryBytes(v);
    if (bin) {
      out.push({ path, bytes: bin });
      continue;
    }
    if (Array.isArray(v) && v.length >= 16 && v.every((x) => Number.isInteger(x) && x >= 0 && x < 256)) {
      out.push({ path, bytes: Uint8Array.from(v as number[]) });
      continue;
    }
    if (v instanceof Map) for (const [k, x] of v) stack.push({ v: k, path: `${path}.key` }, { v: x, path: `${path}[${String(k)}]` });
    else if (v instanceof Set) for (const x of v) stack.push({ v: x, path: `${path}.item` });
    else for (const k of Object.keys(v)) stack.push({ v: (v as Record<string, unknown>)[k], path: `${path}.${k}` });
  }
  return out;
}

/** The byte strings among what `walkHeap` found: its binaries, its strings and byte-value arrays. */
export function byteStringsOfHeap(h: HeapFindings): ByteString[] {
  const out: ByteString[] = [];
  for (const { path, value } of h.objects) {
    const bin = binaryBytes(value);
    if (bin) out.push({ path, bytes: bin });
    else if (Array.isArray(value) && value.length >= 16 && Array.prototype.every.call(value, (x) => Number.isInteger(x) && x >= 0 && x < 256)) out.push({ path, bytes: Uint8Array.from(value as number[]) });
  }
  for (const { path, value } of h.strings) out.push(...stringBytes(value, path));
  return out;
}

/** node-seal objects among what `walkHeap` found (a wrapper holds its wasm object as `instance`), by SEAL class. */
export function sealObjectsIn(h: HeapFindings): { path: string; sealClass: string }[] {
  const out: { path: string; sealClass: string }[] = [];
  for (const { path, value } of h.objects) {
    const inst = (value as { instance?: unknown }).instance;
    if (inst && typeof inst === 'object' && typeof (value as { delete?: unknown }).delete === 'function') {
      out.push({ path, sealClass: (inst as object).constructor?.name ?? '?' });
    }
  }
  return out;
}

/**
 * Where a heap walk of SEAL-holding code stops: node-seal's wrappers (judged by their class,
 * see sealObjectsIn) and its library object (whose wasm heap is the whole instance's memory).
 */
export function isSealInternals(o: object): boolean {
  const r = o as Record<string, unknown>;
  const wrapper = !!r.instance && typeof r.instance === 'object' && typeof r.delete === 'function';
  const library = typeof r.SecretKey === 'function' && typeof r.CipherText === 'function';
  return wrapper || library;
}

function binaryBytes(v: object): Uint8Array | null {
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof ArrayBuffer || v instanceof SharedArrayBuffer) return new Uint8Array(v);
  return null;
}

function stringBytes(s: string, path: string): ByteString[] {
  const out: ByteString[] = [{ path, bytes: new TextEncoder().encode(s) }];
  if (s.length >= 24 && /^[A-Za-z0-9+/_-]+=*$/.test(s)) out.push({ path: `${path} (base64)`, bytes: Buffer.from(s, 'base64') });
  if (s.length >= 32 && s.length % 2 === 0 && /^[0-9a-fA-F]+$/.test(s)) out.push({ path: `${path} (hex)`, bytes: Buffer.from(s, 'hex') });
  return out;
}

/** How deep `root.#keys.#secretKey` lies: a walk for the key alone need not go further. */
const KEY_FIELD_DEPTH = 2;

/**
 * The client's secret key object, read by the heap walk from the `#secretKey` field of the key
 * holder in its `#keys` field (src/he/key-holder.ts; neither has an accessor for it, by
 * design); the test uses it to recognize the key's bytes.
 */
export function secretKeyOf(clientHeap: HeapFindings): SecretKey {
  const hit = clientHeap.objects.find((o) => o.path === 'root.#keys.#secretKey');
  if (!hit) throw new Error("the client's #keys.#secretKey field was not found by the heap walk (renamed?)");
  return hit.value as SecretKey;
}

/** The client's secret key object, by a heap walk that stops at its field (the rest of the client is module state). */
export async function clientSecretKey(client: object, scopesUnder: string): Promise<SecretKey> {
  return secretKeyOf(await walkHeap(client, { scopesUnder, stopWhen: isSealInternals, maxDepth: KEY_FIELD_DEPTH }));
}
