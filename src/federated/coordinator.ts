import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HepolyError } from '../util/errors.js';
import { decodeMessage, encodeMessage, type Message } from './wire.js';
import { CiphertextAdder } from './ckks-aggregate.js';
import { ringAddInto } from './fixed-point.js';
import { bytesU32, u32Bytes } from './wire.js';

/**
 * The coordinator: a relay and an adder, never a key holder. It keeps the roster (names and
 * X25519 public keys), a mailbox for sealed or public messages between parties, and
 * aggregations: it adds the participants' contributions (CKKS ciphertexts, or masked vectors
 * mod 2^32) and hands out the sum. A participant that has not contributed when the round's
 * timeout expires is dropped and the aggregation is redone by the rest (a new attempt, so
 * the parties draw new masks). With HEPOLY_FED_RECORD_DIR set, every body it receives is
 * written there, for the test that checks it never held a secret key.
 */

export interface CoordinatorOptions {
  parties: string[];
  polyModulusDegree: number;
  roundTimeoutS: number;
  /** fewest parties an aggregation may go on with */
  minParties?: number;
}

interface Aggregation {
  attempt: number;
  participants: string[];
  audience: string[] | null;
  mode: 'he' | 'ring';
  contributions: Map<string, Uint8Array[]>;
  deadline: number;
  sum: Uint8Array[] | null;
  dropped: string[];
}

const LONG_POLL_MS = 5000;

export class Coordinator {
  private readonly joined = new Map<string, { publicKey: Uint8Array; meta: unknown }>();
  private readonly alive = new Set<string>();
  private readonly mail = new Map<string, Message>();
  private readonly aggregations = new Map<string, Aggregation>();
  private readonly done = new Set<string>();
  private failure: { from: string; error: string; exitCode: number } | null = null;
  private waiters: (() => void)[] = [];
  private recordCount = 0;
  private server: Server | null = null;
  private adder: CiphertextAdder | null = null;
  private timer: NodeJS.Timeout | null = null;
  readonly finished: Promise<void>;
  private resolveFinished!: () => void;
  bytesIn = 0;
  bytesOut = 0;

  constructor(private readonly opts: CoordinatorOptions) {
    this.finished = new Promise((r) => (this.resolveFinished = r));
  }

  async listen(port: number, host = '127.0.0.1'): Promise<string> {
    this.adder = await CiphertextAdder.create(this.opts.polyModulusDegree);
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.requestTimeout = 0;
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', (e: NodeJS.ErrnoException) =>
        reject(new HepolyError(`coordinator: cannot listen on ${host}:${port} (${e.code ?? e.message}). Choose another --port`, { cause: e })),
      );
      this.server!.listen(port, host, () => resolve());
    });
    this.timer = setInterval(() => this.expireAttempts(), 200);
    const addr = this.server.address();
    return `http://${host}:${typeof addr === 'object' && addr ? addr.port : port}`;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.server?.close();
    this.server?.closeAllConnections?.();
    this.notify();
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves on the next state change or after the long-poll period. */
  private changed(): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), LONG_POLL_MS);
      t.unref();
      this.waiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://coordinator');
      let msg: Message | null = null;
      if (req.method === 'POST') {
        const chunks: Buffer[] = [];
        for await (const c of req) chunks.push(c as Buffer);
        const body = Buffer.concat(chunks);
        this.bytesIn += body.length;
        this.record(url.pathname, body);
        msg = decodeMessage(body);
      }
      const reply = await this.route(url, msg);
      this.send(res, reply === null ? 204 : 200, reply);
    } catch (e) {
      const err = e instanceof HepolyError ? e : new HepolyError(`coordinator: ${(e as Error).message}`);
      this.send(res, 400, { header: { error: err.message, exitCode: err.exitCode }, blobs: [] });
    }
  }

  private send(res: ServerResponse, status: number, m: Message | null): void {
    if (!m) {
      res.writeHead(status).end();
      return;
    }
    const body = encodeMessage(m);
    this.bytesOut += body.length;
    res.writeHead(status, { 'content-type': 'application/octet-stream' }).end(body);
  }

  private record(path: string, body: Buffer): void {
    const dir = process.env.HEPOLY_FED_RECORD_DIR;
    if (!dir) return;
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${String(this.recordCount++).padStart(5, '0')}${path.replace(/\//g, '_')}.bin`), body);
  }

  /** Parties told about a failure; the coordinator stays up until every party was told (or 15 s). */
  private readonly told = new Set<string>();
  /** parties that reported a failure themselves (before or after joining) */
  private readonly failed = new Set<string>();

  /** Every party of the run knows of the failure: told, failed itself, or joined and gone. */
  private everyoneTold(): boolean {
    return this.opts.parties.every((p) => this.told.has(p) || this.failed.has(p) || (this.joined.has(p) && !this.alive.has(p)));
  }

  private checkFailure(from = ''): void {
    if (this.failure && from) {
      this.told.add(from);
      if (this.everyoneTold()) setTimeout(() => this.resolveFinished(), 300);
    }
    if (this.failure) throw new HepolyError(this.failure.from === 'coordinator' ? this.failure.error : `party ${this.failure.from} stopped the run: ${this.failure.error}`, { exitCode: this.failure.exitCode });
  }

  private async route(url: URL, msg: Message | null): Promise<Message | null> {
    const q = url.searchParams;
    const from = String(msg?.header.from ?? q.get('from') ?? '');
    if (url.pathname !== '/fail') this.checkFailure(from);
    switch (url.pathname) {
      case '/join':
        return this.join(from, msg!);
      case '/roster':
        return this.roster(from);
      case '/mail':
        this.mail.set(`${msg!.header.to}|${msg!.header.tag}`, msg!);
        this.notify();
        return ok();
      case '/mailbox': {
        // delivered once, then forgotten: per-step gradients would otherwise pile up
        const key = `${from}|${q.get('tag')}`;
        const m = await this.waitFor(() => this.mail.get(key) ?? null, from);
        if (m) this.mail.delete(key);
        return m;
      }
      case '/agg/plan':
        return this.plan(q.get('id')!, from, q);
      case '/agg/submit':
        return this.submit(from, msg!);
      case '/agg/result':
        return this.result(q.get('id')!, Number(q.get('attempt')), from);
      case '/fail':
        this.failure ??= { from, error: String(msg!.header.error), exitCode: Number(msg!.header.exitCode ?? 1) };
        this.failed.add(from);
        this.notify();
        // when every party refused (none is left to tell), there is nothing to wait for
        setTimeout(() => this.resolveFinished(), this.everyoneTold() ? 300 : 15000).unref();
        return ok();
      case '/done':
        this.done.add(from);
        if ([...this.alive].every((p) => this.done.has(p))) setTimeout(() => this.resolveFinished(), 200);
        return ok();
      default:
        throw new HepolyError(`coordinator: no such endpoint ${url.pathname}`);
    }
  }

  private join(from: string, msg: Message): Message {
    if (!this.opts.parties.includes(from)) {
      throw new HepolyError(`coordinator: party ${JSON.stringify(from)} is not in federated.parties (${this.opts.parties.join(', ')}). Start the party with one of those --name values, with the same recipe as the coordinator`);
    }
    if (this.joined.has(from)) throw new HepolyError(`coordinator: party ${from} joined twice. Each --name may run once per run`);
    this.joined.set(from, { publicKey: msg.blobs[0], meta: msg.header.meta });
    this.alive.add(from);
    this.notify();
    return ok();
  }

  private roster(from: string): Promise<Message | null> {
    return this.waitFor(() => {
      if (this.joined.size < this.opts.parties.length) return null;
      const names = this.opts.parties;
      return { header: { parties: names.map((n) => ({ name: n, meta: this.joined.get(n)!.meta })) }, blobs: names.map((n) => this.joined.get(n)!.publicKey) };
    }, from);
  }

  private plan(id: string, from: string, q: URLSearchParams): Message {
    let agg = this.aggregations.get(id);
    if (!agg) {
      const members = (q.get('members') ?? '').split(',').filter(Boolean);
      const audience = (q.get('audience') ?? '').split(',').filter(Boolean);
      agg = {
        attempt: 0,
        participants: (members.length ? members : [...this.opts.parties]).filter((p) => this.alive.has(p)),
        audience: audience.length ? audience : null,
        mode: q.get('mode') === 'he' ? 'he' : 'ring',
        contributions: new Map(),
        deadline: Date.now() + this.opts.roundTimeoutS * 1000,
        sum: null,
        dropped: [],
      };
      this.aggregations.set(id, agg);
    }
    if (!this.alive.has(from)) throw new HepolyError(`coordinator: party ${from} was dropped from the run after missing a round's deadline (federated.round_timeout). Restart the run to include it`);
    return { header: { attempt: agg.attempt, participants: agg.participants }, blobs: [] };
  }

  private submit(from: string, msg: Message): Message {
    const agg = this.aggregations.get(String(msg.header.id));
    if (!agg) throw new HepolyError(`coordinator: aggregation ${msg.header.id} was never planned`);
    if (Number(msg.header.attempt) !== agg.attempt) return { header: { stale: true }, blobs: [] };
    if (!agg.participants.includes(from)) throw new HepolyError(`coordinator: ${from} is not a participant of aggregation ${msg.header.id}`);
    agg.contributions.set(from, msg.blobs);
    if (agg.contributions.size === agg.participants.length) {
      agg.sum = this.add(agg);
      agg.contributions = new Map([...agg.contributions.keys()].map((k) => [k, []]));
      this.notify();
    }
    return ok();
  }

  private add(agg: Aggregation): Uint8Array[] {
    const parts = agg.participants.map((p) => agg.contributions.get(p)!);
    if (agg.mode === 'he') return this.adder!.sum(parts);
    const acc = bytesU32(parts[0][0]);
    for (const p of parts.slice(1)) ringAddInto(acc, bytesU32(p[0]));
    return [u32Bytes(acc)];
  }

  private result(id: string, attempt: number, from: string): Promise<Message | null> {
    return this.waitFor(() => {
      const agg = this.aggregations.get(id);
      if (!agg) return null;
      if (agg.attempt !== attempt) return { header: { redo: true, dropped: agg.dropped, attempt: agg.attempt, participants: agg.participants }, blobs: [] };
      if (!agg.sum) return null;
      // a contributor outside the audience learns only that the sum is complete
      if (agg.audience && !agg.audience.includes(from)) return { header: { done: true, participants: agg.participants }, blobs: [] };
      return { header: { participants: agg.participants }, blobs: agg.sum };
    }, from);
  }

  /** Drops the participants that missed an attempt's deadline and starts the next attempt. */
  private expireAttempts(): void {
    const now = Date.now();
    let changed = false;
    for (const [id, agg] of this.aggregations) {
      if (agg.sum || now < agg.deadline) continue;
      const missing = agg.participants.filter((p) => !agg.contributions.has(p));
      for (const p of missing) this.alive.delete(p);
      const rest = agg.participants.filter((p) => this.alive.has(p));
      const min = this.opts.minParties ?? 2;
      if (rest.length < min) {
        this.failure ??= {
          from: 'coordinator',
          error: `coordinator: aggregation ${id}: ${missing.join(', ')} sent nothing within federated.round_timeout (${this.opts.roundTimeoutS} s), leaving ${rest.length} of the ${min} parties needed. Restart the run, or raise federated.round_timeout`,
          exitCode: 1,
        };
      } else {
        process.stderr.write(`coordinator: ${id}: dropped ${missing.join(', ')} (no contribution within ${this.opts.roundTimeoutS} s); redoing it with ${rest.join(', ')}\n`);
        agg.attempt++;
        agg.participants = rest;
        agg.contributions = new Map();
        agg.deadline = now + this.opts.roundTimeoutS * 1000;
        agg.dropped.push(...missing);
      }
      changed = true;
      if (rest.length && [...this.alive].every((p) => this.done.has(p))) this.resolveFinished();
    }
    if (changed) this.notify();
  }

  private async waitFor(ready: () => Message | null, from = ''): Promise<Message | null> {
    for (;;) {
      this.checkFailure(from);
      const m = ready();
      if (m) return m;
      if (!(await this.changed())) return null;
    }
  }

  get aliveParties(): string[] {
    return [...this.alive];
  }
}

function ok(): Message {
  return { header: { ok: true }, blobs: [] };
}
