import { request } from 'node:http';
import { HepolyError } from '../util/errors.js';
import { decodeMessage, encodeMessage, type Message } from './wire.js';

/**
 * A party's connection to the coordinator: binary messages over HTTP on one URL. Long polls
 * (the coordinator answers 204 when nothing is ready yet) are retried here; a coordinator that
 * cannot be reached for `connectTimeoutMs` ends the run with a message saying so.
 */
export class CoordinatorClient {
  bytesSent = 0;
  bytesReceived = 0;

  constructor(
    readonly url: string,
    readonly me: string,
    private readonly connectTimeoutMs = Number(process.env.HEPOLY_FED_CONNECT_TIMEOUT_MS ?? 15000),
  ) {}

  /** POSTs a message and returns the reply. */
  post(path: string, header: Record<string, unknown>, blobs: Uint8Array[] = []): Promise<Message> {
    const body = encodeMessage({ header: { from: this.me, ...header }, blobs });
    return this.request(path, body);
  }

  /** Long-polls until the coordinator has an answer. */
  async poll(path: string, query: Record<string, string | number>, deadline?: { seconds: number; what: string }): Promise<Message> {
    const q = new URLSearchParams({ from: this.me, ...Object.fromEntries(Object.entries(query).map(([k, v]) => [k, String(v)])) });
    const started = Date.now();
    for (;;) {
      const m = await this.request(`${path}?${q}`, null);
      if (!m.header.retry) return m;
      if (deadline && Date.now() - started > deadline.seconds * 1000) {
        throw new HepolyError(`party ${this.me}: ${deadline.what} did not arrive within ${deadline.seconds} s (federated.round_timeout): that party stopped or is stuck. Restart the run, or raise federated.round_timeout`);
      }
    }
  }

  private async request(path: string, body: Buffer | null): Promise<Message> {
    const started = Date.now();
    for (;;) {
      let res: { status: number; body: Buffer };
      try {
        res = await httpRequest(`${this.url}${path}`, body);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? ((e as Error).message || 'no answer');
        if (Date.now() - started > this.connectTimeoutMs) {
          throw new HepolyError(
            `party ${this.me}: cannot reach the coordinator at ${this.url} (${code}) for ${Math.round(this.connectTimeoutMs / 1000)} s. Start it first (hepoly federate coordinator RECIPE --port P) and pass its address with --coordinator http://HOST:P`,
            { cause: e },
          );
        }
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      if (body) this.bytesSent += body.length;
      if (res.status === 204) return { header: { retry: true }, blobs: [] };
      this.bytesReceived += res.body.length;
      const m = decodeMessage(res.body);
      if (res.status >= 400) throw new HepolyError(String(m.header.error ?? `coordinator answered ${res.status}`), { exitCode: Number(m.header.exitCode ?? 1) });
      return m;
    }
  }
}

/** One HTTP exchange with node:http (fetch refuses some ports and hides the socket error). */
function httpRequest(url: string, body: Buffer | null): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: body ? 'POST' : 'GET', headers: { 'content-type': 'application/octet-stream', ...(body ? { 'content-length': body.length } : {}) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body ?? undefined);
  });
}
