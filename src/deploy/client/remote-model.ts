import { HepolyError } from '../../util/errors.js';
import { ARTIFACT_FORMAT_VERSION, type ClientArtifact } from '../artifact-format.js';
import { decodeFrames, encodeFrames, jsonPart, parseJsonPart } from '../framing.js';
import type { HEClient } from './he-client.js';
import { argmax, preprocessSample } from './preprocess.js';

/**
 * A deployed model seen from the data owner: `fetch` calls to a `hepoly serve` server (Node 20
 * and browsers both have fetch). Bodies are framed bytes (framing.ts); every request names the
 * server artifact digest the client was exported with, so a mismatched pair fails with a
 * message instead of garbage.
 */

export interface RemoteOptions {
  url: string;
  /** `hepoly serve --token T` */
  token?: string;
  fetch?: typeof fetch;
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

interface ReplyHead {
  state?: 'done' | 'refresh';
  samples: number;
  ms: number[];
  session_id?: unknown;
  round?: unknown;
}

export class RemoteModel {
  bytesSent = 0;
  bytesReceived = 0;
  /** refresh rounds this client answered (`--refresh client` exports) */
  refreshRounds = 0;
  private readonly base: string;
  private readonly fetchFn: typeof fetch;

  constructor(
    readonly artifact: ClientArtifact,
    private readonly opts: RemoteOptions,
  ) {
    this.base = opts.url.replace(/\/+$/, '');
    this.fetchFn = opts.fetch ?? globalThis.fetch.bind(globalThis);
  }

  private async call(method: string, path: string, body?: Uint8Array): Promise<Response> {
    const headers: Record<string, string> = {};
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    if (body) headers['content-type'] = 'application/octet-stream';
    let res: Response;
    try {
      res = await this.fetchFn(`${this.base}${path}`, { method, headers, body: body as BodyInit | undefined });
    } catch (e) {
      throw new HepolyError(`${this.base}: cannot reach the server (${(e as Error).message}). Check --server and that \`hepoly serve\` runs there`);
    }
    if (body) this.bytesSent += body.length;
    if (!res.ok && res.status !== 404 && res.status !== 410) throw await this.failure(res, method, path);
    return res;
  }

  private async failure(res: Response, method: string, path: string): Promise<RemoteError> {
    const text = await res.text();
    this.bytesReceived += text.length;
    let msg = text;
    try {
      msg = (JSON.parse(text) as { error?: string }).error ?? text;
    } catch {
      // not JSON: keep the text
    }
    return new RemoteError(res.status, `${this.base}: ${method} ${path}: ${res.status} ${msg}`);
  }

  /** GET /v1/model, checked against this client artifact. */
  async describe(): Promise<Record<string, unknown>> {
    const res = await this.call('GET', '/v1/model');
    if (!res.ok) throw await this.failure(res, 'GET', '/v1/model');
    const m = (await res.json()) as Record<string, unknown>;
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
    const res = await this.call('GET', `/v1/keys/${keyId}`);
    await res.arrayBuffer();
    return res.ok;
  }

  async uploadKeys(client: HEClient): Promise<string> {
    const res = await this.call('POST', '/v1/keys', client.evaluationKeys);
    if (!res.ok) throw await this.failure(res, 'POST', '/v1/keys');
    const r = (await res.json()) as { key_id: string };
    if (r.key_id !== client.keyId) throw new HepolyError(`${this.base}: filed the keys under ${r.key_id}, expected their sha256 ${client.keyId}`);
    return r.key_id;
  }

  /** Uploads the evaluation keys unless the server already has them. */
  async ensureKeys(client: HEClient): Promise<{ keyId: string; uploaded: boolean }> {
    if (await this.hasKeys(client.keyId)) return { keyId: client.keyId, uploaded: false };
    return { keyId: await this.uploadKeys(client), uploaded: true };
  }

  /**
   * POST /v1/predict: per sample its input ciphertexts in, its output ciphertexts out. A model
   * exported with `--refresh client` answers with ciphertexts to refresh instead, under a
   * session id, `refresh_rounds` times: `client` decrypts and re-encrypts them and they go
   * back to `/v1/sessions/:id/continue` until the output comes.
   */
  async evaluate(keyId: string, samples: Uint8Array[][], client?: Refresher, count = samples.length): Promise<{ outputs: Uint8Array[][]; serverMs: number[]; rounds: number }> {
    // `samples`: one entry per pass (a sample each but for multi-sample packings, which carry `count` samples in all)
    const meta = { key_id: keyId, server_digest: this.artifact.server_digest, artifact_format: ARTIFACT_FORMAT_VERSION, samples: count };
    let reply = await this.post('/v1/predict', encodeFrames([jsonPart(meta), ...samples.flat()]));
    let rounds = 0;
    while (reply.head.state === 'refresh') {
      const { session_id: id, round } = reply.head;
      if (!client) throw new HepolyError(`${this.base}: the model needs client refreshes (refresh_rounds ${this.artifact.refresh_rounds ?? '?'}); pass the HEClient to evaluate()`);
      if (typeof id !== 'string' || !/^[0-9a-f]{32}$/.test(id) || !Number.isInteger(round)) throw new HepolyError('server reply: a refresh answer without a session id and round');
      const fresh = client.refresh(reply.cts);
      rounds++;
      this.refreshRounds++;
      reply = await this.post(`/v1/sessions/${id}/continue`, encodeFrames([jsonPart({ round }), ...fresh]));
    }
    const head = reply.head;
    const per = this.artifact.output.ciphertexts;
    if (head.samples !== count || reply.cts.length !== per * samples.length) {
      throw new HepolyError(`server reply: ${reply.cts.length} ciphertexts for ${head.samples} samples, expected ${per} for each of ${samples.length} passes`);
    }
    const outputs = samples.map((_, s) => reply.cts.slice(s * per, (s + 1) * per));
    return { outputs, serverMs: head.ms, rounds };
  }

  private async post(path: string, body: Uint8Array): Promise<{ head: ReplyHead; cts: Uint8Array[] }> {
    const res = await this.call('POST', path, body);
    if (!res.ok) throw await this.failure(res, 'POST', path);
    const bytes = new Uint8Array(await res.arrayBuffer());
    this.bytesReceived += bytes.length;
    const parts = decodeFrames(bytes, 'server reply');
    return { head: parseJsonPart(parts[0], 'server reply') as ReplyHead, cts: parts.slice(1) };
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
