import type { Worker } from 'node:worker_threads';
import { spawnModuleWorker } from '../../util/module-worker.js';
import type { HeParams } from '../../he/params.js';
import type { HeProgram } from '../../he/program.js';
import type { EvalFromWorker, EvalWork, EvaluationKeyBytes, TensorCts, WorkerPacking } from './eval-protocol.js';
import { HttpError } from './http-util.js';
import { teamInits } from '../../he/team.js';

/**
 * The server's worker threads (eval-worker.ts: one SEAL instance each, the program's
 * diagonals encoded once), shared by every client. Each worker keeps the evaluation keys of
 * its last `maxKeySets` clients; a request goes preferably to an idle worker that already
 * holds its key id, otherwise to the least recently used idle one, which loads the keys (sent
 * with the request). A worker that dies or runs past the timeout is dropped (its request gets
 * a 5xx) and a fresh one takes its place on the next request. With `--workers-per-sample K`
 * a slot is a team of K threads that evaluate each request together (src/he/team.ts); the
 * team is started, fed and dropped as one.
 */

interface Job {
  keyId: string;
  keys: () => EvaluationKeyBytes;
  work: EvalWork;
  enqueued: number;
  resolve: (r: EvalResult) => void;
  reject: (e: Error) => void;
}

export interface EvalResult {
  outputs: TensorCts[];
  ms: number;
}

interface Slot {
  /** the slot's threads (one, or a team), null before its first request and after a drop */
  team: Worker[] | null;
  /** key ids the threads hold, least recently used first (they evict the same way) */
  keyIds: string[];
  busy: boolean;
  lastUsed: number;
  /** per thread of the team */
  heapBytes: number[];
  /** the one request in flight on this slot; `member` says which thread answered */
  onMessage: ((m: EvalFromWorker, member: number) => void) | null;
  onExit: ((code: number) => void) | null;
}

/** a queued request older than this takes the next idle worker even if others match better */
const MAX_AFFINITY_WAIT_MS = 2000;

export class WorkerPool {
  private readonly slots: Slot[];
  private readonly queue: Job[] = [];
  private nextId = 1;
  replaced = 0;
  /** key sets loaded into a worker (a client's first request there, or after an eviction) */
  keyLoads = 0;
  private closed = false;

  constructor(
    size: number,
    private readonly timeoutMs: number,
    private readonly params: HeParams,
    private readonly program: HeProgram,
    private readonly packing: WorkerPacking,
    private readonly maxKeySets: number,
    /** per worker: a cut program's diagonals kept encoded across requests (SampleEvaluator) */
    private readonly keptDiagonalBytes = 0,
    /** threads per slot: a team that evaluates each sample together (a divisor of `size`) */
    private readonly perSample = 1,
  ) {
    this.slots = Array.from({ length: Math.max(1, Math.floor(size / perSample)) }, () => ({ team: null, keyIds: [], busy: false, lastUsed: 0, heapBytes: [], onMessage: null, onExit: null }));
  }

  /** worker threads, over all slots */
  get size(): number {
    return this.slots.length * this.perSample;
  }

  get queueDepth(): number {
    return this.queue.length;
  }

  get busyWorkers(): number {
    return this.slots.filter((s) => s.busy).length * this.perSample;
  }

  /** SEAL wasm heap of each worker (the isolate's external memory; it only grows) */
  get heapBytes(): number[] {
    return this.slots.flatMap((s) => Array.from({ length: this.perSample }, (_, k) => s.heapBytes[k] ?? 0));
  }

  /** Test hook: the live worker threads (a test terminates one to check it is replaced). */
  liveWorkers(): Worker[] {
    return this.slots.flatMap((s) => s.team ?? []);
  }

  /** One sample's pass, or one segment of it (`--refresh client` exports), on the next fitting idle worker. */
  run(keyId: string, keys: () => EvaluationKeyBytes, work: EvalWork): Promise<EvalResult> {
    if (this.closed) return Promise.reject(new HttpError(503, 'the server is shutting down'));
    return new Promise((resolve, reject) => {
      this.queue.push({ keyId, keys, work, enqueued: Date.now(), resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    for (;;) {
      const idle = this.slots.filter((s) => !s.busy);
      if (!idle.length || !this.queue.length) return;
      const holds = (sl: Slot, j: Job) => !!sl.team && sl.keyIds.includes(j.keyId);
      let jobIdx = -1;
      let slot: Slot | undefined;
      if (Date.now() - this.queue[0].enqueued < MAX_AFFINITY_WAIT_MS) {
        jobIdx = this.queue.findIndex((j) => idle.some((sl) => holds(sl, j)));
        if (jobIdx >= 0) slot = idle.find((sl) => holds(sl, this.queue[jobIdx]));
      }
      if (!slot) {
        jobIdx = 0;
        slot = idle.find((sl) => holds(sl, this.queue[0])) ?? idle.sort((a, b) => a.lastUsed - b.lastUsed)[0];
      }
      const [job] = this.queue.splice(jobIdx, 1);
      slot.busy = true;
      void this.execute(slot, job).finally(() => {
        slot.busy = false;
        slot.lastUsed = Date.now();
        this.pump();
      });
    }
  }

  private async execute(slot: Slot, job: Job): Promise<void> {
    try {
      let sendKeys = !slot.keyIds.includes(job.keyId);
      if (!slot.team) {
        this.startTeam(slot, job);
        await this.await(slot, -1, 'ready');
        sendKeys = false;
      }
      const id = this.nextId++;
      const keys = sendKeys ? job.keys() : null;
      // the id is also the team's epoch: the same on every member
      for (const w of slot.team!) w.postMessage({ type: 'eval', id, keyId: job.keyId, keys, work: job.work });
      if (sendKeys) this.keyLoads++;
      // mirror the worker's least-recently-used order and eviction
      slot.keyIds = [...slot.keyIds.filter((k) => k !== job.keyId), job.keyId].slice(-this.maxKeySets);
      const done = await this.await(slot, id, 'evalDone');
      if (done.type !== 'evalDone') throw new Error('internal: unexpected worker reply');
      job.resolve({ outputs: done.outputs, ms: done.ms });
    } catch (e) {
      job.reject(e as Error);
    }
  }

  /** The slot's threads, started with the job's keys (and, for a team, the ports between them). */
  private startTeam(slot: Slot, job: Job): void {
    const inits = this.perSample > 1 ? teamInits(this.perSample) : [undefined];
    const team: Worker[] = [];
    slot.team = team;
    slot.keyIds = [job.keyId];
    const keys = job.keys();
    inits.forEach((teamInit, member) => {
      const w = spawnEvaluationWorker();
      team.push(w);
      w.on('exit', (code) => {
        if (slot.team !== team) return; // dropped on purpose
        // a team cannot go on without one of its threads: the rest go too
        const answer = slot.onExit;
        void this.drop(slot);
        this.replaced++;
        answer?.(code);
      });
      w.on('error', () => {}); // 'exit' follows and answers the request
      w.on('message', (m: EvalFromWorker) => {
        // a thread of a team already dropped must not answer for the slot's next one
        if (slot.team !== team) return;
        if ('heapBytes' in m) slot.heapBytes[member] = Math.max(slot.heapBytes[member] ?? 0, m.heapBytes);
        slot.onMessage?.(m, member);
      });
      const init = { type: 'init' as const, params: this.params, program: this.program, packing: this.packing, maxKeySets: this.maxKeySets, keptDiagonalBytes: this.keptDiagonalBytes, keyId: job.keyId, keys, team: teamInit };
      w.postMessage(init, teamInit ? teamInit.ports.filter((p) => p !== null) : []);
    });
    this.keyLoads++;
  }

  /**
   * Every thread's next reply of `type` for request `id` (the first thread's outputs, the
   * slowest one's time); a death, an error or the timeout reject.
   */
  private await(slot: Slot, id: number, type: 'ready' | 'evalDone'): Promise<EvalFromWorker> {
    const replies: EvalFromWorker[] = [];
    let got = 0;
    const size = slot.team?.length ?? 1;
    return new Promise((resolve, reject) => {
      const finish = (err: Error | null, m?: EvalFromWorker) => {
        clearTimeout(timer);
        slot.onMessage = null;
        slot.onExit = null;
        if (err) reject(err);
        else resolve(m!);
      };
      const timer = setTimeout(() => {
        finish(new HttpError(504, `the evaluation ran past the server's ${this.timeoutMs / 1000} s timeout; its worker was replaced. Retry, or ask the operator for a longer --timeout`));
        void this.drop(slot);
        this.replaced++;
      }, this.timeoutMs);
      slot.onMessage = (m, member) => {
        if (m.type === type && (type === 'ready' || ('id' in m && m.id === id))) {
          if (!replies[member]) got++;
          replies[member] = m;
          if (got === size) finish(null, merged(replies));
        } else if (m.type === 'error' && (m.id === id || m.id === -1)) {
          finish(new HttpError(500, `the evaluation failed in the server's worker: ${m.message}`));
          void this.drop(slot);
        }
      };
      slot.onExit = (code) =>
        finish(new HttpError(500, `the server's evaluation worker died (exit code ${code}, e.g. SEAL's memory ran out); it is replaced for the next request. Retry`));
    });
  }

  private async drop(slot: Slot): Promise<void> {
    const team = slot.team;
    slot.team = null;
    slot.keyIds = [];
    slot.onExit = null;
    if (team) await Promise.all(team.map((w) => w.terminate()));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const j of this.queue.splice(0)) j.reject(new HttpError(503, 'the server is shutting down'));
    await Promise.all(this.slots.map((s) => this.drop(s)));
  }
}

/** A team's replies as one: the first member's (all end with the same outputs), with the slowest member's time. */
function merged(replies: EvalFromWorker[]): EvalFromWorker {
  const first = replies[0];
  if (first.type !== 'evalDone') return first;
  return { ...first, ms: Math.max(...replies.map((r) => (r.type === 'evalDone' ? r.ms : 0))) };
}

function spawnEvaluationWorker(): Worker {
  return spawnModuleWorker(import.meta.url, 'eval-worker');
}
