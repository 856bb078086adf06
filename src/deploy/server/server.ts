import { timingSafeEqual } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { galoisKeyBytes } from '../../he/key-sizes.js';
import { foldTokens } from '../../he/packing/token-fold.js';
import { type PackingKind, packingOf } from '../../he/packing/index.js';
import { ciphertextBytes } from '../../he/packing/batch.js';
import { type HeParams, levelsOf } from '../../he/params.js';
import type { HeProgram } from '../../he/program.js';
import { size } from '../../he/tensor-ops.js';
import { HepolyError } from '../../util/errors.js';
import { checkTeamSize } from '../../he/team.js';
import { ARTIFACT_FORMAT_VERSION } from '../artifact-format.js';
import { type ServerArtifact, loadServerArtifact } from '../artifact-load.js';
import { decodeFrames, encodeFrames, jsonPart, parseJsonPart } from '../framing.js';
import { currentVersions } from '../versions.js';
import { HttpError, readBody, sendBytes, sendJson } from './http-util.js';
import { KeyStore } from './key-store.js';
import { Metrics } from './metrics.js';
import { WorkerPool } from './pool.js';
import { WireChecks } from './wire-checks.js';
import { framedFile, streamToFile } from './upload.js';
import { type PassRunner, openQueueRunner } from './queue-runner.js';
import { DEFAULT_SESSION_TTL_MS, Evaluation } from './evaluation.js';
import { SessionFiles } from './session-files.js';

/**
 * `hepoly serve DIR/server`: the evaluating party over HTTP. It holds the artifact (program,
 * parameters), clients' public evaluation keys (on disk, by key id) and ciphertexts, never a
 * secret key, so it cannot read what it computes on. Routes:
 *   POST /v1/keys            framed [public, relin, Galois] keys -> {key_id} (stored atomically)
 *   GET|DELETE /v1/keys/:id
 *   POST /v1/predict         framed [meta JSON, ciphertexts...] -> framed [meta JSON, ciphertexts...]
 *   POST /v1/sessions/:id/continue, DELETE /v1/sessions/:id   the client refresh rounds of a
 *                            `--refresh client` export (evaluation.ts)
 *   GET /v1/health, GET /v1/model, GET /metrics
 * A bad request gets a 4xx JSON {error} and the server goes on serving.
 */

export interface ServeOptions {
  artifactDir: string;
  host?: string;
  /** 0: any free port (the URL says which) */
  port?: number;
  keysDir?: string;
  workers?: number;
  token?: string;
  /** evaluation keys expire this long after their upload */
  keyTtlMs?: number;
  maxKeyBytes?: number;
  maxRequestBytes?: number;
  /** one sample's evaluation may take this long before its worker is replaced */
  timeoutMs?: number;
  /** redis://HOST:PORT: evaluations go to `hepoly worker`s through the queue (queue-runner.ts) instead of this server's threads */
  queue?: string;
  /** a refresh round (a `--refresh client` export) must come back within this */
  sessionTtlMs?: number;
  /** answer CORS preflights and allow this origin ('*': any), for browser clients on another origin */
  corsOrigin?: string;
  /**
   * per worker: bytes of a `--refresh client` program's diagonals kept encoded between requests
   * (default 3 GiB, which holds resnet-poly's; past it a segment's are encoded again when it comes)
   */
  keptDiagonalBytes?: number;
  /** sample packing: threads that evaluate each request together, for latency (a divisor of `workers`; default 1) */
  workersPerSample?: number;
}

export const DEFAULT_KEPT_DIAGONAL_BYTES = 3 * 2 ** 30;

export const DEFAULT_KEY_TTL_MS = 7 * 24 * 3600 * 1000;
const DEFAULT_MAX_KEY_BYTES = 512 * 2 ** 20;
const DEFAULT_MAX_REQUEST_BYTES = 64 * 2 ** 20;

const PredictMeta = z.object({
  key_id: z.string(),
  server_digest: z.string(),
  artifact_format: z.number(),
  /** samples in the request; a multi-sample packing takes ceil(samples / samples_per_pass) passes */
  samples: z.number().int().min(1).max(65536),
});

/**
 * 64 MiB, or twice the largest client refresh round of one pass where that is more: a server
 * must take back what its own model hands out (vit-poly at N=8192 returns ~110 MB a round).
 * Counted for the batch evaluator's packings only, where each element of a refreshed tensor
 * is one ciphertext; sample-packed rounds are a few ciphertexts a sample, and counting their
 * elements would raise the bound to gigabytes.
 */
function defaultRequestLimit(p: HeProgram, params: HeParams, packing: PackingKind): number {
  if (packingOf(packing).evaluator !== 'batch') return DEFAULT_MAX_REQUEST_BYTES;
  const top = ciphertextBytes(params.polyModulusDegree, levelsOf(params));
  const round = Math.max(0, ...(p.refreshes ?? []).map((r) => r.tensors.reduce((a, t) => a + size(p.tensors[t.src].shape), 0)));
  return Math.max(DEFAULT_MAX_REQUEST_BYTES, 2 * round * top);
}

export class DeployServer {
  readonly metrics = new Metrics();
  private constructor(
    readonly artifact: ServerArtifact,
    readonly keys: KeyStore,
    readonly pool: WorkerPool,
    private readonly checks: WireChecks,
    readonly evaluation: Evaluation,
    /** --queue: the runner that hands passes to queue workers (null: this server's threads) */
    readonly queued: PassRunner | null,
    private readonly http: Server,
    readonly url: string,
  ) {}

  static async start(o: ServeOptions): Promise<DeployServer> {
    const artifact = loadServerArtifact(o.artifactDir);
    const m = artifact.manifest;
    const here = currentVersions();
    if (m.versions.node_seal !== here.node_seal || m.versions.seal !== here.seal) {
      throw new HepolyError(
        `${o.artifactDir}: exported with node-seal ${m.versions.node_seal} (SEAL ${m.versions.seal}), this hepoly has node-seal ${here.node_seal} (SEAL ${here.seal}); their serializations may differ. Export the artifact again with this hepoly`,
      );
    }
    const keys = new KeyStore(o.keysDir ?? `${o.artifactDir.replace(/\/+$/, '')}-keys`, o.keyTtlMs ?? DEFAULT_KEY_TTL_MS);
    const checks = await WireChecks.create(m.params, m.rotation_steps, m.input_ciphertexts);
    const packing = { kind: m.packing.kind, samplesPerPass: m.packing.samples_per_pass ?? 1 };
    // token packing serves the program folded onto token blocks: its segments, sessions and workers all use the folded tensors
    const served = m.packing.kind === 'token' ? foldTokens(artifact.program, m.params.polyModulusDegree / 2).program : artifact.program;
    const workers = o.workers ?? availableParallelism();
    const perSample = checkWorkersPerSample(o, workers, m.packing.kind);
    const pool = new WorkerPool(workers, o.timeoutMs ?? 600_000, m.params, served, packing, keySetsPerWorker(m.params, m.rotation_steps.length), o.keptDiagonalBytes ?? DEFAULT_KEPT_DIAGONAL_BYTES, perSample);
    const http = createServer();
    // a client encrypts (seconds, keygen a minute for large models) between two requests on one
    // keep-alive connection: Node's 5 s default closed it under the client mid-reuse (ECONNRESET)
    http.keepAliveTimeout = 65_000;
    http.headersTimeout = 66_000;
    await new Promise<void>((resolve, reject) => {
      http.once('error', (e: NodeJS.ErrnoException) =>
        reject(new HepolyError(`--port ${o.port ?? 8080}: cannot listen on ${o.host ?? '127.0.0.1'} (${e.code ?? e.message}). Pick another --port or --host`)),
      );
      http.listen(o.port ?? 8080, o.host ?? '127.0.0.1', () => resolve());
    });
    const addr = http.address() as AddressInfo;
    const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    const queued = o.queue ? await openQueueRunner(o.queue, m, artifact.program, o.timeoutMs ?? 600_000) : null;
    // refresh sessions beside the keys: a restarted server on the same --keys folder continues them
    const persist = { files: new SessionFiles(join(keys.dir, 'sessions')), keysFor: (keyId: string) => storedKeys(keys, keyId) };
    const evaluation = new Evaluation(served, queued ?? pool, o.sessionTtlMs ?? DEFAULT_SESSION_TTL_MS, persist);
    const server = new DeployServer(artifact, keys, pool, checks, evaluation, queued, http, `http://${host}:${addr.port}`);
    const limits = { key: o.maxKeyBytes ?? DEFAULT_MAX_KEY_BYTES, request: o.maxRequestBytes ?? defaultRequestLimit(served, m.params, m.packing.kind) };
    http.on('request', (req, res) => {
      if (o.corsOrigin && allowCors(req, res, o.corsOrigin)) return;
      void server.handle(req, res, o.token, limits);
    });
    return server;
  }

  private async handle(req: IncomingMessage, res: ServerResponse, token: string | undefined, limits: { key: number; request: number }): Promise<void> {
    const t0 = performance.now();
    let route = 'unknown';
    let status = 500;
    try {
      const path = new URL(req.url ?? '/', 'http://server').pathname;
      const keyPath = /^\/v1\/keys\/([^/]*)$/.exec(path);
      const sessionPath = /^\/v1\/sessions\/([^/]*)(\/continue)?$/.exec(path);
      route = keyPath
        ? '/v1/keys/:id'
        : sessionPath
          ? `/v1/sessions/:id${sessionPath[2] ?? ''}`
          : ['/v1/health', '/v1/model', '/metrics', '/v1/keys', '/v1/predict'].includes(path)
            ? path
            : 'unknown';
      if (token !== undefined) authorize(req, token);
      const method = req.method ?? 'GET';
      const want = (m: string) => {
        if (method !== m) throw new HttpError(405, `${method} ${path}: use ${m}`);
      };
      if (route === '/v1/health') {
        want('GET');
        status = 200;
        sendJson(res, 200, { status: 'ok', workers: this.pool.size, busy: this.pool.busyWorkers, queue: this.pool.queueDepth });
      } else if (route === '/v1/model') {
        want('GET');
        status = 200;
        sendJson(res, 200, this.describe());
      } else if (route === '/metrics') {
        want('GET');
        status = 200;
        const text = this.metricsText();
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
        res.end(text);
      } else if (route === '/v1/keys') {
        want('POST');
        const r = await this.uploadKeys(req, limits.key);
        status = 201;
        sendJson(res, 201, r);
      } else if (keyPath) {
        const id = KeyStore.checkId(decodeURIComponent(keyPath[1]));
        if (method === 'DELETE') {
          if (!this.keys.delete(id)) throw new HttpError(404, `key id ${id.slice(0, 12)}...: unknown on this server`);
          status = 204;
          res.writeHead(204).end();
        } else {
          want('GET');
          const meta = this.keys.meta(id);
          status = 200;
          sendJson(res, 200, { key_id: id, expires_at: meta.expires_at, bytes: meta.bytes });
        }
      } else if (route === '/v1/predict') {
        want('POST');
        const body = await this.predict(req, limits.request);
        status = 200;
        sendBytes(res, 200, body);
      } else if (sessionPath) {
        const id = decodeURIComponent(sessionPath[1]);
        if (sessionPath[2]) {
          want('POST');
          const body = await this.continueSession(req, id, limits.request);
          status = 200;
          sendBytes(res, 200, body);
        } else {
          want('DELETE');
          this.evaluation.delete(id);
          status = 204;
          res.writeHead(204).end();
        }
      } else {
        throw new HttpError(404, `${path}: no such route. Routes: POST /v1/keys, GET|DELETE /v1/keys/:id, POST /v1/predict, POST /v1/sessions/:id/continue, DELETE /v1/sessions/:id, GET /v1/health, GET /v1/model, GET /metrics`);
      }
    } catch (e) {
      const err = e instanceof HttpError ? e : new HttpError(500, `internal error: ${(e as Error)?.message ?? String(e)}`);
      status = err.status;
      if (!res.headersSent) {
        if (status === 413) res.setHeader('connection', 'close');
        if (status === 401) res.setHeader('www-authenticate', 'Bearer');
        sendJson(res, status, { error: err.message });
      } else res.destroy();
    } finally {
      this.metrics.observe(route, status, (performance.now() - t0) / 1000);
    }
  }

  /** The public description: what a client may know, and check its artifact against. */
  describe(): Record<string, unknown> {
    const m = this.artifact.manifest;
    return {
      format: m.format,
      digest: m.digest,
      versions: m.versions,
      params: m.params,
      packing: m.packing,
      rotation_steps: m.rotation_steps,
      input_shape: m.input_shape,
      classes: m.classes,
      input_ciphertexts: m.input_ciphertexts,
      output_ciphertexts: m.output_ciphertexts,
      depth: m.depth,
      refresh_rounds: m.refresh_rounds ?? 0,
    };
  }

  metricsText(): string {
    return this.metrics.render({
      queueDepth: this.pool.queueDepth,
      workers: this.pool.size,
      busyWorkers: this.pool.busyWorkers,
      workerHeapBytes: this.pool.heapBytes,
      workersReplaced: this.pool.replaced,
      workerKeyLoads: this.pool.keyLoads,
      keysStored: this.keys.count(),
      refreshRoundTrips: this.evaluation.roundTrips,
      refreshSessions: this.evaluation.liveSessions,
    });
  }

  /** POST /v1/keys: streamed to a file in the keys folder, checked part by part, then filed under its sha256. */
  private async uploadKeys(req: IncomingMessage, limit: number): Promise<Record<string, unknown>> {
    requireOctets(req);
    const up = await streamToFile(req, this.keys.uploadFile(), limit, 'POST /v1/keys');
    try {
      const framed = framedFile(up.file, 'POST /v1/keys');
      try {
        this.checks.checkKeys(framed.count, framed.read);
      } finally {
        framed.close();
      }
    } catch (e) {
      rmSync(up.file, { force: true });
      throw e;
    }
    const meta = this.keys.putFile(up.sha256, up.file, up.bytes, this.artifact.manifest.digest);
    return { key_id: up.sha256, expires_at: meta.expires_at, bytes: meta.bytes };
  }

  private async predict(req: IncomingMessage, limit: number): Promise<Uint8Array> {
    requireOctets(req);
    const body = await readBody(req, limit, 'POST /v1/predict');
    let parts: Uint8Array[];
    let raw: unknown;
    try {
      parts = decodeFrames(body, 'POST /v1/predict');
      raw = parseJsonPart(parts[0], 'POST /v1/predict');
    } catch (e) {
      throw new HttpError(400, (e as Error).message);
    }
    const parsed = PredictMeta.safeParse(raw);
    if (!parsed.success) {
      const i = parsed.error.issues[0];
      throw new HttpError(400, `POST /v1/predict: meta.${i.path.join('.')}: ${i.message}. Expected {key_id, server_digest, artifact_format, samples}`);
    }
    const meta = parsed.data;
    const m = this.artifact.manifest;
    if (meta.artifact_format !== ARTIFACT_FORMAT_VERSION) {
      throw new HttpError(409, `POST /v1/predict: the client artifact is format ${meta.artifact_format}, this server speaks format ${ARTIFACT_FORMAT_VERSION}. Export the artifacts again with one hepoly version`);
    }
    if (meta.server_digest !== m.digest) {
      throw new HttpError(409, `POST /v1/predict: the client artifact was exported for the model with digest ${meta.server_digest.slice(0, 12)}, this server serves ${m.digest.slice(0, 12)}. Use the client artifact exported with this server's artifact`);
    }
    const keyId = KeyStore.checkId(meta.key_id);
    const stored = this.keys.get(keyId);
    if (stored.meta.server_digest !== m.digest) {
      throw new HttpError(409, `key id ${keyId.slice(0, 12)}...: uploaded for another model (digest ${stored.meta.server_digest.slice(0, 12)}). Upload keys made with this model's client artifact`);
    }
    const per = m.input_ciphertexts;
    const m1 = m.packing.samples_per_pass ?? 1;
    const passes = Math.ceil(meta.samples / m1);
    if (parts.length - 1 !== passes * per) {
      const unit = m1 > 1 ? `${passes} passes of up to ${m1} samples (${m.packing.kind} packing); this model takes ${per} per pass` : `${meta.samples} samples; this model takes ${per} per sample`;
      throw new HttpError(400, `POST /v1/predict: ${parts.length - 1} ciphertexts for ${unit}`);
    }
    const inputs = Array.from({ length: passes }, (_, s) => parts.slice(1 + s * per, 1 + (s + 1) * per).map((p) => Uint8Array.from(p)));
    inputs.forEach((cts, s) => this.checks.checkInputs(cts, s));
    return this.evaluation.start(keyId, storedKeys(this.keys, keyId), inputs, meta.samples);
  }

  /** POST /v1/sessions/:id/continue: framed [{round}, the re-encrypted ciphertexts of that round...]. */
  private async continueSession(req: IncomingMessage, id: string, limit: number): Promise<Uint8Array> {
    const what = `POST /v1/sessions/${id.slice(0, 40)}/continue`;
    this.evaluation.session(id); // 4xx for an unknown or expired session before the upload is read
    requireOctets(req);
    const body = await readBody(req, limit, what);
    let parts: Uint8Array[];
    let raw: unknown;
    try {
      parts = decodeFrames(body, what);
      raw = parseJsonPart(parts[0], what);
    } catch (e) {
      throw new HttpError(400, (e as Error).message);
    }
    const round = (raw as { round?: unknown } | null)?.round;
    if (!Number.isInteger(round)) throw new HttpError(400, `${what}: meta.round: expected the round number of the server's refresh answer, found ${JSON.stringify(round)}`);
    const cts = parts.slice(1).map((p) => Uint8Array.from(p));
    // an empty part: a ciphertext batch packing leaves out (it was handed out empty, its slots are zeros)
    cts.forEach((c, k) => c.length && this.checks.checkFresh(c, `${what}: ciphertext ${k}`));
    return this.evaluation.continue(id, round as number, cts);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
    await this.pool.close();
    await this.queued?.close();
    this.checks.delete();
  }
}

/** The evaluation keys of a stored key id as the workers take them (read only when a worker lacks them). */
function storedKeys(store: KeyStore, keyId: string): () => { publicKey: Uint8Array; relinKeys: Uint8Array; galoisKeys: Uint8Array | null } {
  return () => {
    const [publicKey, relinKeys, galoisKeys] = decodeFrames(store.get(keyId).bytes, `key id ${keyId}`);
    return { publicKey, relinKeys, galoisKeys: galoisKeys.length ? galoisKeys : null };
  };
}

/** CORS headers on every answer; a preflight (OPTIONS, which carries no token) is answered here. */
function allowCors(req: IncomingMessage, res: ServerResponse, origin: string): boolean {
  res.setHeader('access-control-allow-origin', origin);
  res.setHeader('access-control-allow-headers', 'authorization, content-type');
  res.setHeader('access-control-allow-methods', 'GET, POST, DELETE, OPTIONS');
  if (req.method !== 'OPTIONS') return false;
  res.writeHead(204).end();
  return true;
}

/** Client key sets one worker keeps loaded: about 512 MiB of expanded relinearization and Galois keys (measured: 16 quickstart clients on 2 workers at 1 GiB each took the server to 4 GB RSS), at most 16. */
function keySetsPerWorker(params: Parameters<typeof galoisKeyBytes>[0], rotationSteps: number): number {
  return Math.max(1, Math.min(16, Math.floor(2 ** 29 / galoisKeyBytes(params, rotationSteps + 1))));
}

function authorize(req: IncomingMessage, token: string): void {
  const got = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
  const a = Buffer.from(got);
  const b = Buffer.from(token);
  if (a.length !== b.length || !timingSafeEqual(a, b)) {
    throw new HttpError(401, got ? 'Authorization: wrong bearer token' : 'Authorization: missing; this server needs `Authorization: Bearer <token>` (hepoly predict --token)');
  }
}

function requireOctets(req: IncomingMessage): void {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim();
  if (type !== 'application/octet-stream') {
    throw new HttpError(415, `Content-Type ${JSON.stringify(type)}: send application/octet-stream (framed bytes, see src/deploy/framing.ts), never base64 JSON`);
  }
}

/** --workers-per-sample: a divisor of the workers, for a sample-packed export evaluated on this server's own threads. */
function checkWorkersPerSample(o: ServeOptions, workers: number, packing: string): number {
  const k = checkTeamSize(o.workersPerSample ?? 1, workers);
  if (k === 1) return 1;
  if (o.queue) throw new HepolyError(`--workers-per-sample ${k} with --queue: the queue's workers evaluate each job on their own threads; use one or the other`, { exitCode: 2 });
  if (packing !== 'sample') throw new HepolyError(`--workers-per-sample ${k}: ${o.artifactDir} was exported with ${packing} packing; only sample packing splits one sample over several threads. Export it with --packing sample, or leave the flag out`, { exitCode: 2 });
  return k;
}
