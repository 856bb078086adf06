import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import { spawnModuleWorker } from '../util/module-worker.js';
import { availableParallelism } from 'node:os';
import { refreshPointName } from './refresh.js';
import { reportProgress } from '../util/progress-event.js';
import type { PublicBundle } from './client.js';
import type { HeProgram } from './program.js';
import { stepSources } from './program.js';
import { type OpCounts, addCounts, zeroCounts } from './backend.js';
import { channelGroups, planStages, type Stage } from './packing/batch.js';
import { type LatencyPart, latencyBreakdown } from './latency-breakdown.js';
import { levelsOf } from './params.js';
import type { FromWorker, Packing, Ref, TensorRefs, ToWorker, WorkerInit } from './protocol.js';
import { checkTeamSize, type TeamInit, teamInits } from './team.js';
import { HepolyError } from '../util/errors.js';
import { type RefreshChannel, type RefreshRecord, type SegmentTensors, programSegments, refreshSegmentOutputs } from './refresh.js';

/**
 * The evaluating party. It receives bytes only (public, relinearization and Galois keys, the
 * plaintext program, ciphertexts) and hands them to worker threads, one per core; this thread
 * never even loads SEAL. It has no way to decrypt: no secret key is ever given to it.
 */

export interface ServerOptions {
  workers?: number;
  mode?: 'seal' | 'simulate';
  /** batch packing: return every intermediate tensor (for --trace) */
  keepAll?: boolean;
  /** accumulator bytes per batch stage group and worker */
  memoryBudget?: number;
  /** batch packing: replace a worker between stages once its heap reaches this (see recycleGrownWorkers) */
  recycleHeapBytes?: number;
  /**
   * sample packing: threads that evaluate each sample together (src/he/team.ts), for latency;
   * must divide `workers`. Default 1: each sample on one thread, for throughput.
   */
  workersPerSample?: number;
  /**
   * Test hook (test/he/separation.test.ts): each worker thread copies every message it
   * receives to this callback, as it received it and before acting on it, so a test checks
   * what reached the workers rather than what the server says it sent.
   */
  tap?: (msg: ToWorker) => void;
}

/** The worker side of `ServerOptions.tap`: one port per worker, and a count to wait for. */
class WorkerTap {
  private posted = 0;
  private seen = 0;
  private waiting: (() => void)[] = [];

  constructor(private readonly sink: (msg: ToWorker) => void) {}

  /** A port for one worker thread; the main thread keeps the other end. */
  port(): MessagePort {
    const { port1, port2 } = new MessageChannel();
    port1.on('message', (msg: ToWorker) => {
      this.seen++;
      this.sink(msg);
      if (this.seen === this.posted) for (const w of this.waiting.splice(0)) w();
    });
    port1.unref();
    return port2;
  }

  countPost(): void {
    this.posted++;
  }

  /** Resolves once the workers have copied back every message posted to them so far. */
  drained(): Promise<void> {
    if (this.seen === this.posted) return Promise.resolve();
    return new Promise((resolve) => this.waiting.push(resolve));
  }
}

interface Pending {
  resolve: (m: FromWorker) => void;
  reject: (e: Error) => void;
}

class WorkerHandle {
  private pending = new Map<number, Pending>();
  private ready: Promise<number>;
  /** largest wasm heap this worker reported */
  heapBytes = 0;

  constructor(
    readonly worker: Worker,
    init: WorkerInit,
    private readonly tap: WorkerTap | null,
    team?: TeamInit,
  ) {
    this.ready = new Promise((resolve, reject) => {
      const onMsg = (m: FromWorker) => {
        if ('heapBytes' in m) this.heapBytes = Math.max(this.heapBytes, m.heapBytes);
        if (m.type === 'ready') resolve(m.prepareMs);
        else if (m.type === 'error' && m.id === -1) reject(new Error(m.message));
        else if ('id' in m) {
          const p = this.pending.get(m.id);
          if (!p) return;
          this.pending.delete(m.id);
          if (m.type === 'error') p.reject(Object.assign(new Error(m.message), { stack: m.stack }));
          else p.resolve(m);
        }
      };
      worker.on('message', onMsg);
      worker.on('error', (e) => {
        reject(e);
        for (const p of this.pending.values()) p.reject(e);
        this.pending.clear();
      });
    });
    this.post({ type: 'init', init, team }, team ? team.ports.filter((p) => p !== null) : []);
  }

  whenReady(): Promise<number> {
    return this.ready;
  }

  post(msg: ToWorker, transfer: MessagePort[] = []): void {
    this.tap?.countPost();
    this.worker.postMessage(msg, transfer);
  }

  request(msg: ToWorker & { id: number }): Promise<FromWorker> {
    return new Promise((resolve, reject) => {
      this.pending.set(msg.id, { resolve, reject });
      this.post(msg);
    });
  }
}

function spawnWorker(tap: WorkerTap | null): Worker {
  const port = tap?.port();
  return spawnModuleWorker(import.meta.url, 'worker', port ? { workerData: { tap: port }, transferList: [port] } : {});
}

/** A batch worker's heap beyond which it is replaced between stages (see recycleGrownWorkers). */
const RECYCLE_HEAP_BYTES = 2 ** 30;

export class HEServer {
  counts: OpCounts = zeroCounts();
  prepareMs = 0;
  /** per refresh point, summed over every sample that crossed it */
  readonly refreshes: RefreshRecord[] = [];
  private nextId = 1;
  private stages: Stage[] | null = null;
  /** per worker slot, the largest heap of the workers retired from it */
  private retiredHeapBytes: number[];
  /** workers replaced by fresh ones between batch stages */
  recycledWorkers = 0;
  /** batch packing: wall time of each stage, and of the client refreshes, summed over passes */
  private stageMs: number[] = [];
  private refreshMs = 0;
  private recycleHeapBytes = RECYCLE_HEAP_BYTES;

  private constructor(
    private readonly handles: WorkerHandle[],
    readonly program: HeProgram,
    readonly packing: Packing,
    private readonly init: WorkerInit,
    private readonly tap: WorkerTap | null,
    /** threads per team: each sample's pass runs on one team */
    readonly workersPerSample = 1,
  ) {
    this.retiredHeapBytes = handles.map(() => 0);
  }

  static async start(bundle: PublicBundle, program: HeProgram, packing: Packing, opts: ServerOptions = {}): Promise<HEServer> {
    const init: WorkerInit = {
      params: bundle.params,
      publicKey: bundle.publicKey,
      relinKeys: bundle.relinKeys,
      galoisKeys: bundle.galoisKeys,
      program,
      packing,
      keepAll: !!opts.keepAll,
      memoryBudget: opts.memoryBudget ?? 2e9,
      mode: opts.mode ?? 'seal',
    };
    const n = Math.max(1, opts.workers ?? availableParallelism());
    const perSample = checkWorkersPerSample(opts.workersPerSample ?? 1, n, packing);
    const tap = opts.tap ? new WorkerTap(opts.tap) : null;
    const teams = Array.from({ length: n / perSample }, () => (perSample > 1 ? teamInits(perSample) : [undefined]));
    const handles = teams.flatMap((members) => members.map((team) => new WorkerHandle(spawnWorker(tap), init, tap, team)));
    const server = new HEServer(handles, program, packing, init, tap, perSample);
    if (opts.recycleHeapBytes !== undefined) server.recycleHeapBytes = opts.recycleHeapBytes;
    try {
      const times = await Promise.all(handles.map((h) => h.whenReady()));
      server.prepareMs = Math.max(...times);
    } catch (e) {
      await server.close();
      throw e;
    }
    if (packing === 'batch') server.stages = planStages(program, init.keepAll);
    return server;
  }

  /** Batch packing: the passes' time by component (attention scores, power, division, MLP, norm, refreshes); empty before a pass. */
  get latencyBreakdown(): LatencyPart[] {
    return this.stages && this.stageMs.length ? latencyBreakdown(this.program, this.stages, this.stageMs, this.refreshMs) : [];
  }

  /** Sum over workers of their largest SEAL wasm heap. */
  get workerHeapBytes(): number {
    return this.handles.reduce((a, h, k) => a + Math.max(h.heapBytes, this.retiredHeapBytes[k]), 0);
  }

  /**
   * SEAL keeps freed ciphertext memory in pools per allocation size and a wasm heap never
   * shrinks, so after a stage at one level its memory cannot serve the next stage's smaller
   * ciphertexts: two big stages in one worker add up past wasm32's 4 GiB. A worker that has
   * grown past `recycleHeapBytes` is replaced by a fresh one (same keys, under a second).
   */
  private async recycleGrownWorkers(): Promise<void> {
    await Promise.all(
      this.handles.map(async (h, k) => {
        if (h.heapBytes < this.recycleHeapBytes) return;
        this.retiredHeapBytes[k] = Math.max(this.retiredHeapBytes[k], h.heapBytes);
        await h.worker.terminate();
        const fresh = new WorkerHandle(spawnWorker(this.tap), this.init, this.tap);
        this.handles[k] = fresh;
        this.recycledWorkers++;
        this.prepareMs += await fresh.whenReady();
      }),
    );
  }

  get workerCount(): number {
    return this.handles.length;
  }

  /** The workers in teams of `workersPerSample` (one each without teams). */
  private teams(): WorkerHandle[][] {
    const k = this.workersPerSample;
    return Array.from({ length: this.handles.length / k }, (_, t) => this.handles.slice(t * k, t * k + k));
  }

  /**
   * One request to every member of a team, the same epoch for all; the first member's reply
   * (every member ends with the same tensors), with the team's counts summed and its slowest time.
   */
  private async teamRequest(team: WorkerHandle[], msg: (id: number) => Extract<ToWorker, { type: 'sample' | 'segment' }>): Promise<FromWorker> {
    if (team.length === 1) return team[0].request(msg(this.nextId++));
    const epoch = this.nextId;
    const replies = await Promise.all(team.map((h) => h.request({ ...msg(this.nextId++), epoch })));
    const first = replies[0];
    if (first.type !== 'sampleDone' && first.type !== 'segmentDone') return first;
    let counts = zeroCounts();
    let ms = 0;
    for (const r of replies) {
      if (r.type !== first.type) throw new Error('internal: team members replied differently');
      counts = addCounts(counts, r.counts);
      ms = Math.max(ms, r.ms);
    }
    return { ...first, counts, ms };
  }

  /** Runs jobs on the teams (single workers without teams), each taking the next as it finishes; with `stage`, reports each job done. */
  private async schedule<T>(jobs: ((team: WorkerHandle[]) => Promise<T>)[], stage?: string): Promise<T[]> {
    const results: T[] = new Array(jobs.length);
    let next = 0;
    let done = 0;
    if (stage) reportProgress({ stage, done, total: jobs.length, unit: 'passes' });
    const loop = async (team: WorkerHandle[]) => {
      while (next < jobs.length) {
        const k = next++;
        results[k] = await jobs[k](team);
        if (stage) reportProgress({ stage, done: ++done, total: jobs.length, unit: 'passes' });
      }
    };
    await Promise.all(this.teams().map(loop));
    return results;
  }

  /**
   * Batch packing: one ciphertext per input element (slot s = sample s) in, one per logit
   * out. With keepAll, every tensor's ciphertexts come back too.
   */
  async evaluateBatch(inputs: (Uint8Array | null)[], refresh?: RefreshChannel): Promise<{ outputs: (Uint8Array | null)[]; tensors: Map<number, (Uint8Array | null)[]> }> {
    if (this.packing !== 'batch' || !this.stages) throw new Error('server was started for sample packing');
    const p = this.program;
    const { store, buffers } = sharedTensors([{ tensor: p.input, cts: inputs }]);
    await this.runBatchStages(0, this.stages.length, store, buffers, new Set([p.output]), refresh);
    const tensors = new Map<number, (Uint8Array | null)[]>();
    if (this.init.keepAll) for (const [t, refs] of store) tensors.set(t, bytesOf(refs, buffers));
    return { outputs: bytesOf(store.get(p.output)!, buffers), tensors };
  }

  /**
   * Batch packing, one segment of a program cut for client refreshes (a queued job): the
   * stages of segment `j` on the tensors it starts from (the input, or the client's fresh
   * copies at the refresh point before it); returns the tensors the next refresh needs, or
   * the output. An element the packing leaves out travels as an empty part both ways.
   */
  async evaluateBatchSegment(j: number, given: SegmentTensors): Promise<{ outputs: SegmentTensors; ms: number }> {
    if (this.packing !== 'batch' || !this.stages) throw new Error('server was started for sample packing');
    const seg = programSegments(this.program)[j];
    if (!seg) throw new Error(`internal: segment ${j} of a program with ${programSegments(this.program).length}`);
    const t0 = performance.now();
    const { store, buffers } = sharedTensors(given.map((t) => ({ tensor: t.tensor, cts: t.cts.map((b) => (b.length ? b : null)) })));
    const first = this.stages.findIndex((st) => st.steps[0] >= seg.from);
    const end = this.stages.findIndex((st) => st.steps[0] >= seg.to);
    await this.runBatchStages(first, end < 0 ? this.stages.length : end, store, buffers, new Set(seg.outputs));
    const outputs = seg.outputs.map((t) => ({ tensor: t, cts: bytesOf(store.get(t)!, buffers).map((b) => b ?? new Uint8Array(0)) }));
    return { outputs, ms: performance.now() - t0 };
  }

  /** Stages [k0, k1) over the store; `keep` survives them; a stage after k0 that starts at a refresh point refreshes first. */
  private async runBatchStages(k0: number, k1: number, store: Map<number, Ref[]>, buffers: SharedArrayBuffer[], keep: Set<number>, refresh?: RefreshChannel): Promise<void> {
    const p = this.program;
    const stages = this.stages!;
    const top = levelsOf(this.init.params);
    const N = this.init.params.polyModulusDegree;
    const lastStage = new Map<number, number>();
    for (let k = k0; k < k1; k++) stages[k].steps.forEach((i) => stepSources(p.steps[i]).forEach((t) => lastStage.set(t, k)));
    // a cut program: the stage that starts at a refresh point first sends its tensors to the client
    const refreshAt = new Map((p.refreshes ?? []).map((r, j) => [r.before, j]));
    for (let k = k0 + 1; k < k1; k++) {
      const j = refreshAt.get(stages[k].steps[0]);
      if (j !== undefined) for (const { src } of p.refreshes![j].tensors) lastStage.set(src, Math.max(lastStage.get(src) ?? k, k));
    }
    let refreshed = 0;
    for (let k = k0; k < k1; k++) {
      const st = stages[k];
      const j = k > k0 ? refreshAt.get(st.steps[0]) : undefined;
      if (j !== undefined) {
        const tr = performance.now();
        await this.refreshBatch(j, store, buffers, refresh);
        this.refreshMs += performance.now() - tr;
        refreshed++;
      }
      await this.runBatchStage(k, store, buffers, top, N);
      if (!this.init.keepAll) {
        for (const [t, last] of lastStage) if (last === k && !keep.has(t)) store.delete(t);
        releaseUnreferenced(buffers, store);
      }
      // a refresh is a client round trip: the count tells a waiting user where the run is
      const detail = refreshAt.size ? `${refreshed} client refreshes` : undefined;
      reportProgress({ stage: 'evaluate (batch evaluator)', done: k + 1, total: stages.length, unit: 'layer stages', detail });
      if (k < stages.length - 1) await this.recycleGrownWorkers();
    }
  }

  /** One stage, its channel groups spread over the workers; its exports land in the store. */
  private async runBatchStage(k: number, store: Map<number, Ref[]>, buffers: SharedArrayBuffer[], top: number, N: number): Promise<void> {
    const p = this.program;
    const st = this.stages![k];
    const ts = performance.now();
    const produced = new Set(st.steps.map((i) => p.steps[i].out));
    const srcTensors = new Set<number>();
    for (const i of st.steps) for (const t of stepSources(p.steps[i])) if (!produced.has(t)) srcTensors.add(t);
    const sources: TensorRefs[] = [...srcTensors].map((t) => {
      const elems = store.get(t);
      if (!elems) throw new Error(`internal: tensor ${t} needed by stage ${k} is not available`);
      return { tensor: t, elems };
    });
    const groups = channelGroups(p, st, top, N, this.init.memoryBudget, this.handles.length);
    for (const t of st.exports) store.set(t, new Array(p.tensors[t].shape.reduce((a, b) => a * b, 1)).fill(null));
    const results = await this.schedule(groups.map((group) => ([h]: WorkerHandle[]) => h.request({ type: 'stage', id: this.nextId++, stage: k, group, buffers, sources })));
    this.stageMs[k] = (this.stageMs[k] ?? 0) + performance.now() - ts;
    for (const r of results) {
      if (r.type !== 'stageDone') continue;
      const bi = buffers.length;
      buffers.push(r.buffer);
      this.counts = addCounts(this.counts, r.counts);
      for (const e of r.exports) {
        const arr = store.get(e.tensor)!;
        for (const [i, off, len] of e.elems) arr[i] = [bi, off, len];
      }
    }
  }

  /**
   * Batch packing of a cut program: at refresh point `j` the ciphertexts of its tensors (one
   * per element, every sample of the batch in its slots) go through `refresh` and come back
   * fresh, into a shared buffer the next stages read.
   */
  private async refreshBatch(j: number, store: Map<number, Ref[]>, buffers: SharedArrayBuffer[], refresh: RefreshChannel | undefined): Promise<void> {
    if (!refresh) throw new Error('internal: a program cut for --refresh client needs a refresh channel');
    const p = this.program;
    const point = p.refreshes![j];
    const rec = (this.refreshes[j] ??= { before: refreshPointName(p, point), tensors: point.tensors.map((t) => p.tensors[t.src].label), ciphertexts: 0, bytesToClient: 0, bytesToServer: 0 });
    for (const { src, out } of point.tensors) {
      const refs = store.get(src);
      if (!refs) throw new Error(`internal: tensor ${src} to refresh is not available`);
      const present = refs.flatMap((r, i) => (r ? [i] : []));
      const sent = present.map((i) => {
        const r = refs[i]!;
        return new Uint8Array(buffers[r[0]], r[1], r[2]).slice();
      });
      const back = await refresh(p.tensors[src].label, sent, { point: j, tensor: src, elements: present });
      rec.ciphertexts += sent.length;
      rec.bytesToClient += sent.reduce((a, b) => a + b.length, 0);
      rec.bytesToServer += back.reduce((a, b) => a + b.length, 0);
      const sab = new SharedArrayBuffer(Math.max(1, back.reduce((a, b) => a + b.length, 0)));
      const view = new Uint8Array(sab);
      const fresh: Ref[] = refs.map(() => null);
      let off = 0;
      back.forEach((b, k) => {
        view.set(b, off);
        fresh[present[k]] = [buffers.length, off, b.length];
        off += b.length;
      });
      buffers.push(sab);
      store.set(out, fresh);
    }
  }

  /**
   * Sample packing: many samples, each sample's ciphertexts to one worker. A program cut for
   * `--refresh client` runs segment by segment; between two, the tensors the rest needs go
   * through `refresh` (the client) and come back as fresh ciphertexts.
   */
  async evaluateSamples(
    samples: Uint8Array[][],
    trace = false,
    refresh?: RefreshChannel,
  ): Promise<{ outputs: Uint8Array[][]; trace: { tensor: number; cts: Uint8Array[] }[][]; ms: number[] }> {
    if (this.packing !== 'sample') throw new Error('server was started for batch packing');
    if (this.program.refreshes?.length) {
      if (!refresh) throw new Error('internal: a program cut for --refresh client needs a refresh channel to the client');
      const runs = await this.runSegmented(samples, refresh);
      return { outputs: runs.outputs, trace: runs.outputs.map(() => []), ms: runs.ms };
    }
    const results = await this.schedule(samples.map((inputs) => (team: WorkerHandle[]) => this.teamRequest(team, (id) => ({ type: 'sample', id, inputs, trace }))), 'evaluate');
    const outputs: Uint8Array[][] = [];
    const traces: { tensor: number; cts: Uint8Array[] }[][] = [];
    const ms: number[] = [];
    for (const r of results) {
      if (r.type !== 'sampleDone') continue;
      outputs.push(r.outputs);
      traces.push(r.trace);
      ms.push(r.ms);
      this.counts = addCounts(this.counts, r.counts);
    }
    return { outputs, trace: traces, ms };
  }

  /**
   * Segment by segment over all samples (not sample by sample), so each worker encodes one
   * segment's diagonals at a time and only once: a deep network's diagonals together exceed
   * a wasm heap.
   */
  private async runSegmented(samples: Uint8Array[][], refresh: RefreshChannel): Promise<{ outputs: Uint8Array[][]; ms: number[] }> {
    const p = this.program;
    const segs = programSegments(p);
    let carry: SegmentTensors[] = samples.map((inputs) => [{ tensor: p.input, cts: inputs }]);
    const ms = samples.map(() => 0);
    for (let j = 0; j < segs.length; j++) {
      const res = await this.evaluateSegment(j, carry);
      res.ms.forEach((t, s) => (ms[s] += t));
      if (j === segs.length - 1) return { outputs: res.outputs.map((o) => o[0].cts), ms };
      carry = await refreshSegmentOutputs(p, j, res.outputs, refresh, this.refreshes);
      reportProgress({ stage: `client refresh ${j + 1}/${segs.length - 1}`, done: carry.length, total: res.outputs.length, unit: 'passes' });
    }
    throw new Error('internal: a program has at least one segment');
  }

  /**
   * Segment `j` of a program cut for --refresh client, for many samples: each sample's
   * segment inputs (fresh or refreshed tensors) on one worker; per sample, the tensors the
   * next segment needs refreshed (the program output after the last segment). runSegmented
   * runs every segment with the client in between; a queue worker (src/queue/) runs one
   * segment per job, the client refreshing between jobs.
   */
  async evaluateSegment(j: number, carry: SegmentTensors[]): Promise<{ outputs: SegmentTensors[]; ms: number[] }> {
    if (this.packing !== 'sample') throw new Error('server was started for batch packing');
    const segs = programSegments(this.program);
    const seg = segs[j];
    if (!seg) throw new Error(`internal: segment ${j} of a program with ${segs.length}`);
    const results = await this.schedule(
      carry.map((tensors) => (team: WorkerHandle[]) => this.teamRequest(team, (id) => ({ type: 'segment', id, from: seg.from, to: seg.to, tensors, keep: seg.outputs }))),
      `evaluate segment ${j + 1}/${segs.length}`,
    );
    const ms: number[] = [];
    const outputs = results.map((r) => {
      if (r.type !== 'segmentDone') throw new Error('internal: unexpected worker reply');
      ms.push(r.ms);
      this.counts = addCounts(this.counts, r.counts);
      return r.outputs;
    });
    return { outputs, ms };
  }

  /** With `ServerOptions.tap`: resolves once every message posted so far has reached the tap. */
  tapDrained(): Promise<void> {
    if (!this.tap) throw new Error('internal: tapDrained() needs a server started with a tap');
    return this.tap.drained();
  }

  async close(): Promise<void> {
    await Promise.all(this.handles.map((h) => h.worker.terminate()));
  }
}

/** Tensors' ciphertexts copied once into shared memory that every worker reads in place. */
function sharedTensors(tensors: { tensor: number; cts: (Uint8Array | null)[] }[]): { store: Map<number, Ref[]>; buffers: SharedArrayBuffer[] } {
  const total = tensors.reduce((a, t) => a + t.cts.reduce((b, c) => b + (c ? c.length : 0), 0), 0);
  const sab = new SharedArrayBuffer(Math.max(1, total));
  const view = new Uint8Array(sab);
  const store = new Map<number, Ref[]>();
  let off = 0;
  for (const t of tensors) {
    store.set(
      t.tensor,
      t.cts.map((b) => {
        if (!b) return null;
        view.set(b, off);
        const r: Ref = [0, off, b.length];
        off += b.length;
        return r;
      }),
    );
  }
  return { store, buffers: [sab] };
}

const bytesOf = (refs: Ref[], buffers: SharedArrayBuffer[]) => refs.map((r) => (r ? Uint8Array.from(new Uint8Array(buffers[r[0]], r[1], r[2])) : null));

/** A stand-in for a result buffer no tensor reads any more (indices into `buffers` stay valid). */
const RELEASED = new SharedArrayBuffer(1);

/**
 * Drops the result buffers of a batch pass that no stored tensor points into. Without this a
 * pass holds every stage's ciphertexts to its end: a vit-poly pass at N=8192 grew past 20 GB.
 */
export function releaseUnreferenced(buffers: SharedArrayBuffer[], store: Map<number, Ref[]>): void {
  const live = new Set<number>();
  for (const refs of store.values()) for (const r of refs) if (r) live.add(r[0]);
  for (let i = 0; i < buffers.length; i++) if (!live.has(i)) buffers[i] = RELEASED;
}

/** --workers-per-sample K: a divisor of the workers, for sample packing (batch packing spreads each layer over every worker already). */
function checkWorkersPerSample(k: number, workers: number, packing: Packing): number {
  if (checkTeamSize(k, workers) === 1) return 1;
  if (packing === 'batch') throw new HepolyError(`--workers-per-sample ${k}: only sample packing splits one sample over several workers (batch packing already spreads each layer over all of them). Use --packing sample, or leave the flag out.`, { exitCode: 2 });
  return k;
}
