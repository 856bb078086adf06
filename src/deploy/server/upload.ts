import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { HttpError } from './http-util.js';

/**
 * A key upload streamed to a file as it arrives, hashed on the way: evaluation keys are tens
 * to hundreds of megabytes, and a server buffering every concurrent upload in memory can be
 * filled by a few clients. The body limit is checked before a byte is read (Content-Length)
 * and on every chunk (413); an upload that breaks off before its end is a 400 and leaves no
 * file. The framed parts are then read back one at a time (framedFile), so checking the keys
 * holds only the part SEAL loads, never the whole body.
 */

export interface Upload {
  file: string;
  bytes: number;
  sha256: string;
}

export function streamToFile(req: IncomingMessage, file: string, limit: number, what: string): Promise<Upload> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > limit) return Promise.reject(tooLarge(declared, limit, what));
  const fd = openSync(file, 'wx', 0o600);
  const hash = createHash('sha256');
  let size = 0;
  let settled = false;
  return new Promise<Upload>((resolve, reject) => {
    const fail = (e: HttpError) => {
      if (settled) return;
      settled = true;
      closeSync(fd);
      rmSync(file, { force: true });
      reject(e);
    };
    req.on('data', (c: Buffer) => {
      if (settled) return; // over the limit: the rest is read and dropped, so the client gets the 413
      size += c.length;
      if (size > limit) return fail(tooLarge(size, limit, what));
      hash.update(c);
      try {
        for (let off = 0; off < c.length; ) off += writeSync(fd, c, off, c.length - off);
      } catch (e) {
        fail(new HttpError(507, `${what}: the server cannot store the upload (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); retry later`));
      }
    });
    req.on('end', () => {
      if (settled) return;
      if (Number.isFinite(declared) && size !== declared) return fail(brokeOff(size, what));
      settled = true;
      closeSync(fd);
      resolve({ file, bytes: size, sha256: hash.digest('hex') });
    });
    req.on('error', () => fail(brokeOff(size, what)));
    req.on('close', () => fail(brokeOff(size, what)));
  });
}

function tooLarge(size: number, limit: number, what: string): HttpError {
  return new HttpError(413, `${what}: the body has ${size} bytes or more, the limit is ${limit}. Send fewer samples per request, or start the server with a larger limit`);
}

function brokeOff(size: number, what: string): HttpError {
  return new HttpError(400, `${what}: the upload broke off after ${size} bytes (the body ended before its Content-Length); nothing was stored. Send it again`);
}

/**
 * A framed body on disk ("HPF1" | u32 count | (u32 length | bytes)*, framing.ts), its structure
 * checked from the length fields alone; `read(k)` loads one part.
 */
export function framedFile(file: string, what: string): { count: number; read(k: number): Uint8Array; close(): void } {
  const fd = openSync(file, 'r');
  const size = fstatSync(fd).size;
  const at = (pos: number, n: number) => {
    const b = Buffer.alloc(n);
    readSync(fd, b, 0, n, pos);
    return b;
  };
  const bad = (why: string) => {
    closeSync(fd);
    return new HttpError(400, `${what}: not a hepoly framed body (${why}). Send "HPF1", a u32 part count and u32-length-prefixed parts (src/deploy/framing.ts)`);
  };
  if (size < 8 || at(0, 4).toString('latin1') !== 'HPF1') throw bad('no HPF1 header');
  const count = at(4, 4).readUInt32LE(0);
  const parts: [number, number][] = [];
  let off = 8;
  for (let k = 0; k < count; k++) {
    if (k > 16 || off + 4 > size) throw bad(k > 16 ? `${count} parts` : `part ${k} has no length`);
    const len = at(off, 4).readUInt32LE(0);
    if (off + 4 + len > size) throw bad(`part ${k} claims ${len} bytes, ${size - off - 4} remain`);
    parts.push([off + 4, len]);
    off += 4 + len;
  }
  if (off !== size) throw bad(`${size - off} bytes after the last part`);
  return {
    count,
    read: (k) => new Uint8Array(at(parts[k][0], parts[k][1])),
    close: () => closeSync(fd),
  };
}
