import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import type { CkksBackend } from './backend.js';
import { counting, zeroCounts } from './backend.js';
import { CkksContext, loadSeal } from './seal.js';
import { SealBackend } from './seal-backend.js';
import { SimBackend } from './sim-backend.js';
import { loadEvaluationKeys } from './keys.js';
import { planStages, runStageGroup, type Stage, type TensorStore } from './packing/batch.js';
import { SampleEvaluator, planSample } from './packing/sample.js';
import type { FromWorker, Ref, ToWorker, WorkerInit } from './protocol.js';
import { PortTeam, type Team, type TeamInit } from './team.js';

/**
 * One evaluation thread of the server, with its own SEAL instance (a wasm32 heap of up to
 * 4 GiB each, which is also why work is split over threads rather than one big heap). It is
 * built from bytes only: parameters, public/relinearization/Galois keys, the plaintext program.
 */

const port = parentPort;
if (!port) throw new Error('he/worker.ts must run in a worker thread');

interface State {
  init: WorkerInit;
  be: CkksBackend<unknown, unknown>;
  counts: ReturnType<typeof zeroCounts>;
  stages: Stage[] | null;
  sample: SampleEvaluator<unknown, unknown> | null;
  team: Team<unknown> | null;
}

let state: State | null = null;

/** Test hook (ServerOptions.tap): a port that gets a copy of every message this thread receives. */
const tap = (workerData as { tap?: MessagePort } | null)?.tap ?? null;

async function setup(init: WorkerInit, teamInit?: TeamInit): Promise<State> {
  const counts = zeroCounts();
  let base: CkksBackend<unknown, unknown>;
  if (init.mode === 'simulate') base = new SimBackend(init.params, { noise: true }) as CkksBackend<unknown, unknown>;
  else {
    const seal = await loadSeal();
    const ctx = CkksContext.create(seal, init.params);
    base = new SealBackend(ctx, loadEvaluationKeys(ctx, init)) as CkksBackend<unknown, unknown>;
  }
  const be = counting(base, counts);
  const team = teamInit ? new PortTeam(teamInit, be) : null;
  const st: State = { init, be, counts, stages: null, sample: null, team };
  if (init.packing === 'batch') st.stages = planStages(init.program, init.keepAll);
  else st.sample = new SampleEvaluator(init.program, planSample(init.program, be.slots), be, { team: team ?? undefined });
  return st;
}

function send(msg: FromWorker, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(msg, transfer);
}

function takeCounts(s: State) {
  const c = { ...s.counts };
  Object.assign(s.counts, zeroCounts());
  return c;
}

/** Serialized ciphertexts of one result, packed into one shared buffer. */
function pack(parts: Uint8Array[]): { buffer: SharedArrayBuffer; offsets: number[] } {
  const total = parts.reduce((a, p) => a + p.length, 0);
  const buffer = new SharedArrayBuffer(Math.max(1, total));
  const view = new Uint8Array(buffer);
  const offsets: number[] = [];
  let off = 0;
  for (const p of parts) {
    view.set(p, off);
    offsets.push(off);
    off += p.length;
  }
  return { buffer, offsets };
}

function runStage(s: State, msg: Extract<ToWorker, { type: 'stage' }>): void {
  const t0 = performance.now();
  const refs = new Map<number, Ref[]>(msg.sources.map((r) => [r.tensor, r.elems]));
  const store: TensorStore<unknown> = {
    acquire: (t, i) => {
      const r = refs.get(t)?.[i];
      if (!r) return null;
      return s.be.deserialize(new Uint8Array(msg.buffers[r[0]], r[1], r[2]));
    },
    release: (c) => s.be.free(c),
  };
  const stage = s.stages![msg.stage];
  const result = runStageGroup({ program: s.init.program, be: s.be, store, memoryBudget: s.init.memoryBudget }, stage, msg.group);
  const parts: Uint8Array[] = [];
  const index: { tensor: number; elems: [number, number, number][] }[] = [];
  for (const [tensor, m] of result) {
    const elems: [number, number, number][] = [];
    for (const [i, c] of m) {
      if (!c) continue;
      const bytes = s.be.serialize(c);
      s.be.free(c);
      elems.push([i, parts.length, bytes.length]);
      parts.push(bytes);
    }
    index.push({ tensor, elems });
  }
  const { buffer, offsets } = pack(parts);
  for (const e of index) for (const el of e.elems) el[1] = offsets[el[1]];
  send({ type: 'stageDone', id: msg.id, buffer, exports: index, counts: takeCounts(s), ms: performance.now() - t0, heapBytes: process.memoryUsage().external });
}

function runSample(s: State, msg: Extract<ToWorker, { type: 'sample' }>): void {
  const t0 = performance.now();
  const be = s.be;
  const inputs = msg.inputs.map((b) => be.deserialize(b));
  const trace: { tensor: number; cts: Uint8Array[] }[] = [];
  const outs = s.sample!.run(inputs, msg.trace ? (t, cts) => trace.push({ tensor: t, cts: cts.map((c) => be.serialize(c)) }) : undefined);
  const outputs = outs.map((c) => be.serialize(c));
  for (const c of outs) be.free(c);
  for (const c of inputs) be.free(c);
  send({ type: 'sampleDone', id: msg.id, outputs, trace, counts: takeCounts(s), ms: performance.now() - t0, heapBytes: process.memoryUsage().external });
}

function runSegment(s: State, msg: Extract<ToWorker, { type: 'segment' }>): void {
  // diagonals are encoded once per segment and worker: setup, kept out of the sample's time
  s.sample!.prepareRange(msg.from, msg.to);
  // members encode their own shares, at their own pace: the pass starts together
  s.team?.exchange(`segment ${msg.from} prepared`, []);
  const t0 = performance.now();
  const be = s.be;
  const given = new Map(msg.tensors.map((t) => [t.tensor, t.cts.map((b) => be.deserialize(b))]));
  const kept = s.sample!.runRange(given, msg.from, msg.to, msg.keep);
  const outputs = [...kept].map(([tensor, cts]) => ({ tensor, cts: cts.map((c) => be.serialize(c)) }));
  for (const cts of kept.values()) for (const c of cts) be.free(c);
  for (const cts of given.values()) for (const c of cts) be.free(c);
  send({ type: 'segmentDone', id: msg.id, outputs, counts: takeCounts(s), ms: performance.now() - t0, heapBytes: process.memoryUsage().external });
}

port.on('message', (msg: ToWorker) => {
  // a team's ports moved here with the message and cannot be copied on: the tap gets the rest
  tap?.postMessage(msg.type === 'init' && msg.team ? { ...msg, team: { ...msg.team, ports: [] } } : msg);
  void (async () => {
    const id = 'id' in msg ? msg.id : -1;
    try {
      if (msg.type === 'init') {
        const t0 = performance.now();
        state = await setup(msg.init, msg.team);
        send({ type: 'ready', prepareMs: performance.now() - t0, heapBytes: process.memoryUsage().external });
      } else if (msg.type === 'close') {
        port.close();
      } else if (!state) {
        throw new Error('worker used before init');
      } else if (msg.type === 'stage') runStage(state, msg);
      else if (msg.type === 'sample' || msg.type === 'segment') {
        state.team?.begin(msg.epoch ?? 0);
        if (msg.type === 'sample') runSample(state, msg);
        else runSegment(state, msg);
      }
    } catch (e) {
      const err = e as Error;
      // peers blocked on this member's next message would otherwise wait for their timeout
      state?.team?.abort(err?.message ?? String(e));
      send({ type: 'error', id, message: err?.message ?? String(e), stack: err?.stack });
    }
  })();
});
