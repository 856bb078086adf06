import { randomBytes } from 'node:crypto';
import type { HeProgram } from '../../he/program.js';
import { type Segment, programSegments } from '../../he/refresh.js';
import { encodeFrames, jsonPart } from '../framing.js';
import type { EvalWork, EvaluationKeyBytes, TensorCts } from './eval-protocol.js';
import { HttpError } from './http-util.js';
import type { EvalResult } from './pool.js';
import type { SessionFiles } from './session-files.js';

/** Where sessions are kept across restarts, and how a reloaded session's key id becomes its keys again. */
export interface SessionPersistence {
  files: SessionFiles;
  keysFor: (keyId: string) => () => EvaluationKeyBytes;
}

/** Who evaluates a pass or a segment: the server's worker threads (pool.ts) or the queue's workers (queue-runner.ts). */
export interface Evaluator {
  run(keyId: string, keys: () => EvaluationKeyBytes, work: EvalWork): Promise<EvalResult>;
}

/**
 * One request's evaluation, whole or in segments. A program exported with `--refresh client`
 * is cut where the CKKS chain runs out (src/he/refresh.ts): the server runs a segment, answers
 * the ciphertexts the next segment starts from, and keeps only a session (key id, which
 * segment comes next, how many ciphertexts it handed out). The data owner decrypts and
 * re-encrypts them at the top level and posts them to `/v1/sessions/:id/continue`; the last
 * segment's answer is the output. Between two rounds the server holds no ciphertext of the
 * request (every tensor the rest needs goes through the client), so a session costs bytes.
 * With a SessionPersistence, each session is also a small file (session-files.ts), written when
 * a round's answer is ready and reloaded when the server starts: a session survives a restart or
 * a kill -9, and a round whose answer was lost to one can be sent again.
 *
 * Reply, framed: [meta, ciphertexts...] with meta
 *   {state: 'done', samples, ms}                                   output ciphertexts follow
 *   {state: 'refresh', session_id, round, rounds, samples, ms,      ciphertexts to re-encrypt
 *    per_sample}                                                    follow, sample by sample
 */

interface Session {
  keyId: string;
  keys: () => EvaluationKeyBytes;
  /** passes */
  samples: number;
  /** samples the request asked for (several per pass in batch packing) */
  count: number;
  /** the segment the next continue runs */
  next: number;
  /** per refreshed tensor (in the refresh point's order): ciphertexts per sample */
  counts: number[];
  ms: number[];
  /** counts and times before the last answered round: a client whose answer was lost (a restart) sends that round again */
  prev?: { counts: number[]; ms: number[] };
  expiresAt: number;
  busy: boolean;
}

const SESSION_ID = /^[0-9a-f]{32}$/;
/** live sessions past this answer 503 (each is a few hundred bytes; this bounds a flood) */
const MAX_SESSIONS = 4096;
export const DEFAULT_SESSION_TTL_MS = 10 * 60 * 1000;

export class Evaluation {
  private readonly sessions = new Map<string, Session>();
  private readonly segments: Segment[];
  /** client round trips handed out (one per refresh point and request) */
  roundTrips = 0;

  constructor(
    private readonly program: HeProgram,
    private readonly pool: Evaluator,
    private readonly sessionTtlMs = DEFAULT_SESSION_TTL_MS,
    private readonly persist?: SessionPersistence,
  ) {
    this.segments = programSegments(program);
    for (const [id, saved] of persist?.files.load() ?? []) {
      if (saved.next < 1 || saved.next > this.rounds) {
        persist!.files.remove(id); // saved for another program: not a session of this one
        continue;
      }
      const { key_id: keyId, samples, count, next, counts, ms, prev, expires_at: expiresAt } = saved;
      this.sessions.set(id, { keyId, keys: persist!.keysFor(keyId), samples, count: count ?? samples, next, counts, ms, prev, expiresAt, busy: false });
    }
  }

  get rounds(): number {
    return this.segments.length - 1;
  }

  get liveSessions(): number {
    this.sweep();
    return this.sessions.size;
  }

  /** POST /v1/predict: every pass's input ciphertexts (one sample each but for multi-sample packings), checked by the caller. */
  async start(keyId: string, keys: () => EvaluationKeyBytes, samples: Uint8Array[][], count = samples.length): Promise<Uint8Array> {
    if (!this.rounds) {
      const results = await Promise.all(samples.map((inputs) => this.pool.run(keyId, keys, { kind: 'pass', inputs })));
      return done(results.map((r) => r.outputs[0].cts), results.map((r) => r.ms), count);
    }
    this.sweep();
    if (this.sessions.size >= MAX_SESSIONS) throw new HttpError(503, `${MAX_SESSIONS} refresh sessions are open on this server; retry when some have finished or expired`);
    const session: Session = { keyId, keys, samples: samples.length, count, next: 0, counts: [], ms: samples.map(() => 0), expiresAt: 0, busy: true };
    const id = randomBytes(16).toString('hex');
    this.sessions.set(id, session);
    try {
      return await this.runSegment(id, session, samples.map((cts) => [{ tensor: this.program.input, cts }]));
    } finally {
      session.busy = false;
    }
  }

  /** The session of a continue or delete: 404 unknown, 410 expired, 409 mid-round. */
  session(id: string): Session {
    if (!SESSION_ID.test(id)) throw new HttpError(400, `session id ${JSON.stringify(id.slice(0, 80))}: expected 32 hex digits (the session_id of the server's refresh answer)`);
    const s = this.sessions.get(id);
    if (!s) throw new HttpError(404, `session ${id}: unknown on this server (finished, deleted, or the server stopped before its first round was answered). Send the request again with POST /v1/predict`);
    if (s.expiresAt <= Date.now() && !s.busy) {
      this.drop(id);
      throw new HttpError(410, `session ${id}: expired (a refresh round must come back within ${this.sessionTtlMs / 1000} s). Send the request again with POST /v1/predict`);
    }
    return s;
  }

  /** Ciphertexts the data owner re-encrypted for round `round`, in the order they were handed out. */
  async continue(id: string, round: number, cts: Uint8Array[]): Promise<Uint8Array> {
    const s = this.session(id);
    if (s.busy) throw new HttpError(409, `session ${id}: round ${s.next} is being evaluated; wait for its answer`);
    if (round === s.next - 1 && round >= 1 && s.prev) {
      // the answer of the last round was lost (the client holds what it sent): evaluate it again
      s.next = round;
      s.counts = s.prev.counts;
      s.ms = [...s.prev.ms];
    }
    if (round !== s.next) {
      throw new HttpError(409, `session ${id}: expects round ${s.next}, the request says ${round} (a repeated or skipped continue; only the last answered round can be sent again). Delete the session and send the request again with POST /v1/predict`);
    }
    const per = s.counts.reduce((a, b) => a + b, 0);
    if (cts.length !== per * s.samples) {
      throw new HttpError(400, `POST /v1/sessions/${id}/continue: ${cts.length} ciphertexts, round ${round} handed out ${per} per sample for ${s.samples} samples; send back each one re-encrypted, in order`);
    }
    const point = this.program.refreshes![round - 1];
    const carry = Array.from({ length: s.samples }, (_, k) => {
      let off = k * per;
      return point.tensors.map((t, j) => {
        const part = cts.slice(off, off + s.counts[j]);
        off += s.counts[j];
        return { tensor: t.out, cts: part };
      });
    });
    s.busy = true;
    try {
      return await this.runSegment(id, s, carry);
    } finally {
      s.busy = false;
    }
  }

  delete(id: string): boolean {
    this.session(id);
    return this.drop(id);
  }

  private drop(id: string): boolean {
    this.persist?.files.remove(id);
    return this.sessions.delete(id);
  }

  private async runSegment(id: string, s: Session, carry: TensorCts[][]): Promise<Uint8Array> {
    const seg = this.segments[s.next];
    const before = { counts: s.counts, ms: [...s.ms] };
    let results;
    try {
      results = await Promise.all(carry.map((tensors) => this.pool.run(s.keyId, s.keys, { kind: 'segment', from: seg.from, to: seg.to, tensors, keep: seg.outputs })));
    } catch (e) {
      this.drop(id); // a failed round ends the session: the client starts again
      throw e;
    }
    results.forEach((r, k) => (s.ms[k] += r.ms));
    if (s.next === this.rounds) {
      this.drop(id);
      return done(results.map((r) => r.outputs[0].cts), s.ms, s.count);
    }
    if (s.next >= 1) s.prev = before;
    s.counts = results[0].outputs.map((o) => o.cts.length);
    s.next++;
    s.expiresAt = Date.now() + this.sessionTtlMs;
    this.roundTrips++;
    this.persist?.files.save(id, { key_id: s.keyId, samples: s.samples, count: s.count, next: s.next, counts: s.counts, ms: s.ms, prev: s.prev, expires_at: s.expiresAt });
    const meta = { state: 'refresh', session_id: id, round: s.next, rounds: this.rounds, samples: s.samples, ms: s.ms, per_sample: s.counts.reduce((a, b) => a + b, 0) };
    return encodeFrames([jsonPart(meta), ...results.flatMap((r) => r.outputs.flatMap((o) => o.cts))]);
  }

  private sweep(now = Date.now()): void {
    for (const [id, s] of this.sessions) if (!s.busy && s.expiresAt <= now) this.drop(id);
  }
}

function done(outputs: Uint8Array[][], ms: number[], samples = outputs.length): Uint8Array {
  return encodeFrames([jsonPart({ state: 'done', samples, passes: outputs.length, ms }), ...outputs.flat()]);
}
