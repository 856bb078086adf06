import type { IncomingMessage, ServerResponse } from 'node:http';

/** A request the server refuses: the status and a message saying what is wrong and what to do. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * The body as bytes, refused with 413 as soon as it passes `limit` (a declared Content-Length
 * over it is refused before a byte is read), so a huge upload cannot fill the server's memory.
 */
export function readBody(req: IncomingMessage, limit: number, what: string): Promise<Uint8Array> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > limit) return Promise.reject(tooLarge(declared, limit, what));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (done) return;
      if (size > limit) {
        done = true;
        // keep reading (and dropping) the rest, so the client gets the 413 rather than a reset
        chunks.length = 0;
        reject(tooLarge(size, limit, what));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      const buf = Buffer.concat(chunks, size);
      resolve(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
    });
    req.on('error', (e) => {
      if (!done) (done = true), reject(new HttpError(400, `${what}: the upload broke off (${e.message})`));
    });
  });
}

function tooLarge(size: number, limit: number, what: string): HttpError {
  return new HttpError(413, `${what}: the body has ${size} bytes or more, the limit is ${limit}. Send fewer samples per request, or start the server with a larger limit`);
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendBytes(res: ServerResponse, status: number, body: Uint8Array): void {
  res.writeHead(status, { 'content-type': 'application/octet-stream', 'content-length': body.length });
  res.end(body);
}
