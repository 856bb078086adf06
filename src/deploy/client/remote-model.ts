import { HepolyError } from '../../util/errors.js';
import { ARTIFACT_FORMAT_VERSION, type ClientArtifact } from '../artifact-format.js';
import { decodeFrames, encodeFrames, jsonPart, parseJsonPart } from '../framing.js';
import type { HEClient } from './he-client.js';
import { argmax, preprocessSample } from './preprocess.js';
import { type RetryPolicy, backoffMs, connectionFailure, retryPolicy, retryableStatus, sleep } from './retry.js';

/**
 * A deployed model seen from the data owner: `fetch` calls to a `hepoly serve` server (Node 20
 * and browsers both have fetch). Bodies are framed bytes (framing.ts); every request names the
 * server artifact digest the client was exported with, so a mismatched pair fails with a
 * message instead of garbage. A server that restarts (or is killed) mid-request is waited for:
 * requests go out again on connection errors and 502/503 (retry.ts), a refresh round again
 * under its round number, and keys or sessions the restarted server lacks are sent again or
 * started over (evaluate).
 */

export interface RemoteOptions {
  url: string;
  /** `hepoly serve --token T` */
  token?: string;
  fetch?: typeof fetch;
  /**
   * Sending a request again after a connection error or a 502/503 (retry.ts): attempts in all
   * and the first wait, doubling up to maxMs (default 8 tries, 200 ms to 5 s); `false`: once.
   */
  retry?: Partial<RetryPolicy> | false;
  /** told of each request about to be sent again (the CLI prints it) */
  onRetry?: (r: { method: string; path: string; attempt: number; failed: string }) => void;
}

/** A 4xx/5xx answer, with the server's own message. */
export class RemoteError extends HepolyError {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface RemotePrediction {
  logits: Float64Array[];
  /** argmax class per sample */
  classes: number[];
  labels: string[];
  /** milliseconds the server's workers spent per pass (per sample but for multi-sample packings) */
  serverMs: number[];
}

/** The part of HEClient a refresh round needs. */
export interface Refresher {
  refresh(cts: Uint8Array[]): Uint8Array[];
}

/** The part of HEClient a key upload needs: a server that lost the keys gets them again from it. */
export interface KeyOwner {
  keyId: string;
  evaluationKeys: Uint8Array;
}

interface ReplyHead {
  state?: 'done' | 'refresh';
  samples: number;
  ms: number[];
  session_id?: unknown;
  round?: unknown;
}

type Reply = { head: ReplyHead; cts: Uint8Array[] };

/** One answer with its body read; `attempts` > 1 when it took sending the request again. */
interface Answer {
  status: number;
  ok: boolean;
  bytes: Uint8Array;
  attempts: number;
}

export class RemoteModel {
  bytesSent = 0;
  bytesReceived = 0;
  /** refresh rounds this client answered (`--refresh client` exports) */
  refreshRounds = 0;
  /** requests sent again after a connection error or a 502/503 */
  retries = 0;
  /** evaluation key uploads, a re-upload to a server that no longer knew the key id included */
  keyUploads = 0;
  /** requests started again from POST /v1/predict because the server lost their refresh session */
  restarts = 0;
  private readonly base: string;
  private readonly fetchFn: typeof fetch;
  private readonly retry: RetryPolicy;

  constructor(
    readonly artifact: ClientArtifact,
    private readonly opts: RemoteOptions,
  ) {
    this.base = opts.url.replace(/\/+$/, '');
    try {
      // relative URLs are fine in a page (its own origin), nowhere else; checked here so a typo is not retried as an outage
      new URL(this.base, (globalThis as { location?: { href: string } }).location?.href);
    } catch {
      throw new HepolyError(`RemoteModel option url ${JSON.stringify(opts.url)}: not a URL. Pass the server's address, e.g. http://127.0.0.1:8080`);
    }
    this.fetchFn = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.retry = retryPolicy(opts.retry);
  }

  /**
   * One request, its answer read whole, sent again (the same bytes) while the connection fails
   * or the answer is a 502/503, as the retry policy allows. Other statuses are the caller's.
   */
  private async exchange(method: string, path: string, body?: Uint8Array): Promise<Answer> {
    const headers: Record<string, string> = {};
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    if (body) headers['content-type'] = 'application/octet-stream';
    const t0 = Date.now();
    for (let attempt = 1; ; attempt++) {
      let failed: string;
      try {
        const res = await this.fetchFn(`${this.base}${path}`, { method, headers, body: body as BodyInit | undefined });
        const bytes = new Uint8Array(await res.arrayBuffer());
        if (body) this.bytesSent += body.length;
        this.bytesReceived += bytes.length;
        if (!retryableStatus(res.status) || attempt >= this.retry.tries) return { status: res.status, ok: res.ok, bytes, attempts: attempt };
        failed = `${res.status} ${errorText(bytes)}`;
      } catch (e) {
        const f = connectionFailure(e);
        if (f.abort) throw e;
        if (attempt >= this.retry.tries) throw this.unreachable(method, path, f.cause, attempt, Date.now() - t0);
        failed = f.cause;
      }
      this.retries++;
      this.opts.onRetry?.({ method, path, attempt, failed });
      await sleep(backoffMs(this.retry, attempt));
    }
  }

  private unreachable(method: string, path: string, cause: string, attempts: number, ms: number): HepolyError {
    const tried = attempts > 1 ? `after ${attempts} tries over ${(ms / 1000).toFixed(1)} s` : 'tried once (retry: false)';
    return new HepolyError(`${this.base}: the server is unreachable: ${method} ${path} failed (${cause}), ${tried}. Check --server and that \`hepoly serve\` runs there`);
  }

  /** The answer of a request that must succeed; anything else is a RemoteError with the server's message. */
  private async expectOk(method: string, path: string, body?: Uint8Array): Promise<Uint8Array> {
    const a = await this.exchange(method, path, body);
    if (!a.ok) throw this.failure(a, method, path);
    return a.bytes;
  }

  private failure(a: Answer, method: string, path: string): RemoteError {
    return new RemoteError(a.status, `${this.base}: ${method} ${path}: ${a.status} ${errorText(a.bytes)}`);
  }

  /** GET /v1/model, checked against this client artifact. */
  async describe(): Promise<Record<string, unknown>> {
    const m = parseJson(await this.expectOk('GET', '/v1/model'), `${this.base}/v1/model`) as Record<string, unknown>;
    if (m.digest !== this.artifact.server_digest) {
      throw new HepolyError(
        `${this.base}: serves the model with digest ${String(m.digest).slice(0, 12)}, this client artifact was exported for ${this.artifact.server_digest.slice(0, 12)}. Use the client artifact exported with that server artifact`,
      );
    }
    const v = m.versions as { node_seal?: string; seal?: string; artifact_format?: number } | undefined;
    const mine = this.artifact.versions;
    if (!v || v.artifact_format !== mine.artifact_format || v.node_seal !== mine.node_seal || v.seal !== mine.seal) {
      throw new HepolyError(
        `${this.base}: serves artifact format ${v?.artifact_format} with node-seal ${v?.node_seal} (SEAL ${v?.seal}); this client artifact is format ${mine.artifact_format}, node-seal ${mine.node_seal} (SEAL ${mine.seal}). Export both artifacts with one hepoly`,
      );
    }
    return m;
  }

  /** True when the server holds (unexpired) keys under this id. */
  async hasKeys(keyId: string): Promise<boolean> {
    const path = `/v1/keys/${keyId}`;
    const a = await this.exchange('GET', path);
    if (a.status === 404 || a.status === 410) return false;
    if (!a.ok) throw this.failure(a, 'GET', path);
    return true;
  }

  /** POST /v1/keys: the same bytes again only renew their expiry, so a re-sent upload is harmless. */
  async uploadKeys(client: KeyOwner): Promise<string> {
    const r = parseJson(await this.expectOk('POST', '/v1/keys', client.evaluationKeys), `${this.base}/v1/keys`) as { key_id: string };
    this.keyUploads++;
    if (r.key_id !== client.keyId) throw new HepolyError(`${this.base}: filed the keys under ${r.key_id}, expected their sha256 ${client.keyId}`);
    return r.key_id;
  }

  /** Uploads the evaluation keys unless the server already has them. */
  async ensureKeys(client: KeyOwner): Promise<{ keyId: string; uploaded: boolean }> {
    if (await this.hasKeys(client.keyId)) return { keyId: client.keyId, uploaded: false };
    return { keyId: await this.uploadKeys(client), uploaded: true };
  }

  /**
   * POST /v1/predict: per sample its input ciphertexts in, its output ciphertexts out. A model
   * exported with `--refresh client` answers with ciphertexts to refresh instead, under a
   * session id, `refresh_rounds` times: `client` decrypts and re-encrypts them and they go
   * back to `/v1/sessions/:id/continue` until the output comes.
   *
   * A restarted server: each request is sent again while the connection fails (exchange); a
   * continue names its round, so the same round sent again is evaluated again (the server's
   * session keeps the last answered one). A session the server no longer has (404/410, or a
   * 409 to a round sent again) starts the request over from POST /v1/predict with the same
   * input ciphertexts, at most retry.tries times; a key id it no longer knows (404/410 to
   * the predict) gets the client's keys uploaded again, once, when `client` holds them.
   */
  async evaluate(keyId: string, samples: Uint8Array[][], client?: Refresher & Partial<KeyOwner>, count = samples.length): Promise<{ outputs: Uint8Array[][]; serverMs: number[]; rounds: number }> {
    // `samples`: one entry per pass (a sample each but for multi-sample packings, which carry `count` samples in all)
    let id = keyId;
    let reuploaded = false;
    for (let start = 1; ; ) {
      const meta = { key_id: id, server_digest: this.artifact.server_digest, artifact_format: ARTIFACT_FORMAT_VERSION, samples: count };
      const a = await this.exchange('POST', '/v1/predict', encodeFrames([jsonPart(meta), ...samples.flat()]));
      if ((a.status === 404 || a.status === 410) && !reuploaded && client?.evaluationKeys && client.keyId) {
        reuploaded = true; // the server lost or expired the keys (another --keys folder, a --key-ttl): once, then its message
        id = await this.uploadKeys({ keyId: client.keyId, evaluationKeys: client.evaluationKeys });
        continue;
      }
      if (!a.ok) throw this.failure(a, 'POST', '/v1/predict');
      const done = await this.sessionRounds(reply(a.bytes), client);
      if (done) return this.outputs(done.reply, samples.length, count, done.rounds);
      if (start >= this.retry.tries) throw new HepolyError(`${this.base}: lost the refresh session of this request ${start} times (the server restarted or expired it between rounds); giving up. Check the server's log and --session-ttl`);
      start++;
      this.restarts++;
    }
  }

  /** The refresh rounds of one session, to its output; null when the server lost the session (start over). */
  private async sessionRounds(first: Reply, client?: Refresher): Promise<{ reply: Reply; rounds: number } | null> {
    let r = first;
    let rounds = 0;
    while (r.head.state === 'refresh') {
      const { session_id: id, round } = r.head;
      if (!client) throw new HepolyError(`${this.base}: the model needs client refreshes (refresh_rounds ${this.artifact.refresh_rounds ?? '?'}); pass the HEClient to evaluate()`);
      if (typeof id !== 'string' || !/^[0-9a-f]{32}$/.test(id) || !Number.isInteger(round)) throw new HepolyError('server reply: a refresh answer without a session id and round');
      const fresh = client.refresh(r.cts);
      rounds++;
      this.refreshRounds++;
      const path = `/v1/sessions/${id}/continue`;
      const a = await this.exchange('POST', path, encodeFrames([jsonPart({ round }), ...fresh]));
      // 404/410: finished, expired or dropped while the server was down; 409 to a round sent again: the server moved past it
      if (a.status === 404 || a.status === 410 || (a.status === 409 && a.attempts > 1)) {
        if (a.status === 409) await this.exchange('DELETE', `/v1/sessions/${id}`).catch(() => undefined);
        return null;
      }
      if (!a.ok) throw this.failure(a, 'POST', path);
      r = reply(a.bytes);
    }
    return { reply: r, rounds };
  }

  private outputs(r: Reply, passes: number, count: number, rounds: number): { outputs: Uint8Array[][]; serverMs: number[]; rounds: number } {
    const per = this.artifact.output.ciphertexts;
    if (r.head.samples !== count || r.cts.length !== per * passes) {
      throw new HepolyError(`server reply: ${r.cts.length} ciphertexts for ${r.head.samples} samples, expected ${per} for each of ${passes} passes`);
    }
    const outputs = Array.from({ length: passes }, (_, s) => r.cts.slice(s * per, (s + 1) * per));
    return { outputs, serverMs: r.head.ms, rounds };
  }

  /** Raw samples (before normalization) -> predictions: preprocess, encrypt, evaluate remotely, decrypt. */
  async predict(client: HEClient, keyId: string, raw: ArrayLike<number>[]): Promise<RemotePrediction> {
    const m = client.samplesPerPass;
    const x = raw.map((r, i) => preprocessSample(this.artifact, r, `sample ${i}`));
    const passes = Array.from({ length: Math.ceil(x.length / m) }, (_, p) => x.slice(p * m, (p + 1) * m));
    const { outputs, serverMs } = await this.evaluate(keyId, passes.map((pass) => client.encryptPass(pass)), client, x.length);
    const logits = outputs.flatMap((o, p) => client.decryptPass(o, passes[p].length));
    const classes = logits.map((l) => argmax(l));
    return { logits, classes, labels: classes.map((c) => this.artifact.preprocess.labels[c] ?? String(c)), serverMs };
  }
}

function reply(bytes: Uint8Array): Reply {
  const parts = decodeFrames(bytes, 'server reply');
  return { head: parseJsonPart(parts[0], 'server reply') as ReplyHead, cts: parts.slice(1) };
}

/** The server's JSON {error}, or the body as text. */
function errorText(bytes: Uint8Array): string {
  const text = new TextDecoder().decode(bytes);
  try {
    return (JSON.parse(text) as { error?: string }).error ?? text;
  } catch {
    return text; // not JSON (a proxy's page): keep the text
  }
}

function parseJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new HepolyError(`${what}: the answer is not JSON; is this a hepoly serve server?`);
  }
}
