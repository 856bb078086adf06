import * as tf from '@tensorflow/tfjs-core';
import { reportProgress } from '../../util/progress-event.js';
import type { Checkpoint } from '../../train/checkpoint.js';
import { heldOutSplit, toParams } from '../../train/evaluate.js';
import { forward } from '../../models/tf-interpreter.js';
import { type Graph, type WeightMap, layerOf } from '../../models/graph.js';
import type { CkksBackend } from '../backend.js';
import { SimBackend } from '../sim-backend.js';
import { HepolyError } from '../../util/errors.js';
import { HEClient } from '../client.js';
import { SimClient, type ClientLike } from '../sim-client.js';
import { RecyclingSealBackend } from '../recycling-backend.js';
import { type HeParams, loadParamsFile, summarize, type ParamsSummary } from '../params.js';
import type { Ranges } from '../../train/checkpoint.js';
import { encodeInputs, evaluateSequenceModel, evaluateSequenceModelAsync, type Component, type ReciprocalChoice } from './evaluator.js';
import { ClientRefresher, describeRefreshes } from './refresh.js';
import { compareLogits } from '../compare.js';
import { unpackBatch } from '../packing/batch.js';
import { type RefreshMode, checkSequenceParams, chooseRefreshParams, chooseUnrefreshedParams } from './params.js';

/**
 * `hepoly he-validate` for transformer checkpoints: the held-out samples through the plaintext
 * model and through encrypt (client) -> evaluate on ciphertexts (a backend built from the
 * client's public bytes only) -> decrypt (client). Batch packing: slot s = sample s, one
 * ciphertext per tensor element, so one pass covers up to N/2 samples.
 */

export interface SequenceLayerError {
  node: string;
  /** chain level of the node's output (after any refresh) */
  level: number;
  /** max |decrypted - plaintext| over the samples and the node's elements */
  maxAbsError: number;
  /** max |plaintext| of the node (scale of the error) */
  maxAbs: number;
}

export interface SequenceValidateOptions {
  samples: number;
  mode?: 'encrypt' | 'simulate';
  refresh?: RefreshMode;
  /** 'auto' or a JSON file */
  params?: string;
  trace?: boolean;
  log?: (line: string) => void;
  /** replace the evaluator's SEAL heap between nodes once this many ciphertext bytes were made (default 1 GiB) */
  recycleBudgetBytes?: number;
}

export interface SequenceReport {
  checkpoint: string;
  split: 'test' | 'validation';
  task: 'classify' | 'lm';
  samples: number;
  mode: 'encrypt' | 'simulate';
  refresh: RefreshMode;
  params: ParamsSummary;
  paramsSource: string;
  /** levels the whole network needs without refresh */
  depth: number;
  reciprocals: ReciprocalChoice[];
  plaintextAccuracy: number;
  encryptedAccuracy: number;
  agreement: number;
  maxAbsError: number;
  /** server time per component for the whole batch, refresh time excluded */
  componentMs: Record<Component, number>;
  /** client time spent decrypting and re-encrypting at refresh points */
  refreshMs: number;
  refreshes: { count: number; ciphertexts: number; where: { at: string; times: number; ciphertexts: number }[] };
  timings: { keygenMs: number; encryptMs: number; evaluateMs: number; decryptMs: number; totalMs: number };
  latencyMsPerSample: number;
  amortizedMsPerSample: number;
  ciphertexts: { input: number; output: number; refreshed: number };
  bytes: { keys: number; clientToServer: number; serverToClient: number };
  ctCtMults: number;
  ptMults: number;
  /** times the evaluator's SEAL heap was replaced by a fresh one between nodes, and the time it took */
  heapRecycles: { count: number; ms: number };
  layers: SequenceLayerError[] | null;
}

/** Levels the network spends from input to output, measured by running it on a tall simulated chain. */
export function measureDepth(graph: Graph, weights: WeightMap, ranges: Ranges | null, x: Float32Array, count: number): { depth: number; maxAbs: number; reciprocals: ReciprocalChoice[] } {
  const levels = 600;
  const be = new SimBackend({ polyModulusDegree: Math.max(16, 2 ** Math.ceil(Math.log2(2 * count))), coeffModulusBits: [60, ...new Array<number>(levels).fill(40), 60], scaleBits: 40 }, { noise: false });
  const enc = encodeInputs(graph, x, count);
  let maxAbs = 1;
  const track = (cts: { v: Float64Array }[]) => {
    cts.forEach((c) => {
      for (let s = 0; s < count; s++) maxAbs = Math.max(maxAbs, Math.abs(c.v[s]));
    });
  };
  const { output, report } = evaluateSequenceModel(be, graph, weights, ranges, enc.values.map((v) => be.encryptInput(v)), {
    onNode: (_n, cts) => track(cts as { v: Float64Array }[]),
  });
  // power-softmax denominators are formed inside the attention node: their range bounds them
  for (const r of report.reciprocals) maxAbs = Math.max(maxAbs, r.hi);
  return { depth: report.levelsUsed, maxAbs: 4 * maxAbs, reciprocals: report.reciprocals };
}

export async function validateSequence(ckpt: Checkpoint, opts: SequenceValidateOptions): Promise<SequenceReport> {
  const log = opts.log ?? (() => {});
  const t0 = performance.now();
  const mode = opts.mode ?? 'encrypt';
  const refresh = opts.refresh ?? 'none';
  const graph = ckpt.graph;
  const split = await heldOutSplit(ckpt);
  const n = Math.min(opts.samples, split.count);
  const per = graph.inputShape.reduce((a, b) => a * b, 1);
  const x = split.x.subarray(0, n * per);
  const y = split.y.subarray(0, n);
  const task = graph.nodes.some((nd) => layerOf(nd).op === 'embedding') ? 'lm' : 'classify';

  const { depth, maxAbs, reciprocals } = measureDepth(graph, ckpt.weights, ckpt.ranges, x.subarray(0, Math.min(n, 8) * per), Math.min(n, 8));
  let params: HeParams;
  let paramsSource = 'auto';
  if (!opts.params || opts.params === 'auto') {
    params = refresh === 'client' ? chooseRefreshParams(maxAbs) : chooseUnrefreshedParams(depth, maxAbs);
  } else {
    params = loadParamsFile(opts.params);
    paramsSource = opts.params;
    checkSequenceParams(params, depth, maxAbs, refresh, opts.params);
  }
  if (n > params.polyModulusDegree / 2) throw new HepolyError(`--samples ${n}: more than the ${params.polyModulusDegree / 2} slots of one batch at N=${params.polyModulusDegree}; use at most ${params.polyModulusDegree / 2}`);
  const summary = summarize(params, { depth, maxAbs });
  log(`checkpoint ${ckpt.dir}: transformer (${task}), ${split.name} split, ${n} of ${split.count} samples, batch packing (slot = sample)`);
  log(`depth ${depth} levels without refresh; ${reciprocals.map((r) => `${r.node} reciprocal: Newton on [${fmt(r.lo)}, ${fmt(r.hi)}], ${r.iterations} iterations = ${r.levels} levels`).join('; ')}`);
  log(`parameters (${paramsSource}): N=${params.polyModulusDegree}, coeff modulus [${params.coeffModulusBits.join(', ')}], scale 2^${params.scaleBits}, ${summary.levels} levels, 128-bit security${refresh === 'client' ? ', client refresh when a step needs more levels than are left' : ''}`);
  log(`mode: ${mode === 'simulate' ? 'simulate (float64 with the same levels, scales and noise model, no encryption)' : 'encrypt (SEAL)'}`);

  // client: keys and inputs; the evaluator side is built from the public bytes only
  let t = performance.now();
  const client: ClientLike = mode === 'simulate' ? new SimClient(params) : await HEClient.create(params);
  const bundle = client.publicBundle([]);
  const keygenMs = performance.now() - t;
  const keyBytes = bundle.publicKey.length + bundle.relinKeys.length;
  const server = await evaluationBackend(bundle, mode, opts.recycleBudgetBytes ?? RECYCLE_BUDGET_BYTES);
  let failed = false;
  const be = server.be;

  const plainParams = toParams(ckpt.weights);
  const plainOf = (node: string): Float32Array =>
    tf.tidy(() => forward({ ...graph, output: node }, plainParams, tf.tensor(x, [n, ...graph.inputShape]), { training: false }).logits.dataSync() as Float32Array);
  const decryptAll = (cts: unknown[]) => cts.map((c) => client.decrypt(be.serialize(c)));
  try {
    t = performance.now();
    const enc = encodeInputs(graph, x, n);
    const sent = client.encrypt(enc.values);
    const encryptMs = performance.now() - t;
    const input = sent.map((b) => be.deserialize(b));

    const layers: SequenceLayerError[] = [];
    const refresher = refresh === 'client' ? new ClientRefresher(be, client) : null;
    const onNode = opts.trace
      ? (node: string, cts: unknown[]) => {
          const ref = plainOf(node);
          const got = decryptAll(cts);
          let err = 0;
          let mx = 0;
          for (let s = 0; s < n; s++) {
            for (let i = 0; i < got.length; i++) {
              // rows a language model's last block skips are holes
              if (!got[i]) continue;
              const r = ref[s * got.length + i];
              err = Math.max(err, Math.abs(got[i][s] - r));
              mx = Math.max(mx, Math.abs(r));
            }
          }
          layers.push({ node, level: Math.min(...cts.filter(() => true).map((c) => be.levelOf(c))), maxAbsError: err, maxAbs: mx });
          log(`  ${node.padEnd(12)} level ${String(layers[layers.length - 1].level).padStart(2)}  max|err| ${fmt(err)}  (max|value| ${fmt(mx)})`);
        }
      : undefined;
    // a deep model under --refresh client runs for many minutes: one event per layer evaluated
    let nodesDone = 0;
    const onNodeDone = (node: string, cts: unknown[]) => {
      onNode?.(node, cts);
      reportProgress({ stage: 'evaluate', done: ++nodesDone, total: graph.nodes.length, unit: 'layers', detail: refresher ? `${refresher.count} client refreshes` : undefined });
    };
    t = performance.now();
    const { output, report } = await evaluateSequenceModelAsync(
      be,
      graph,
      ckpt.weights,
      ckpt.ranges,
      input,
      {
        levels: refresher ? { ensure: refresher.ensure as never, ms: () => refresher.ms } : undefined,
        onNode: onNodeDone,
      },
      server.between,
    );
    const evalWall = performance.now() - t;
    const recycleMs = server.recycled().ms;
    const traceMs = opts.trace ? evalWall - Object.values(report.ms).reduce((a, b) => a + b, 0) - (refresher?.ms ?? 0) - recycleMs : 0;
    const evaluateMs = evalWall - (refresher?.ms ?? 0) - traceMs;
    t = performance.now();
    const outBytes = output.map((c) => be.serialize(c));
    const logits = outBytes.map((b) => client.decrypt(b));
    const decryptMs = performance.now() - t;
    output.forEach((c) => be.free(c));

    const plain = plainOf(graph.output);
    const cmp = compareLogits(plain, unpackBatch(logits, graph.classes, n), y, n, graph.classes);
    const refreshMs = refresher?.ms ?? 0;
    const pass = encryptMs + evaluateMs + refreshMs + decryptMs;
    const refreshed = refresher?.ciphertexts ?? 0;
    return {
      checkpoint: ckpt.dir,
      split: split.name,
      task,
      samples: n,
      mode,
      refresh,
      params: summary,
      paramsSource,
      depth,
      reciprocals,
      plaintextAccuracy: cmp.plainCorrect / n,
      encryptedAccuracy: cmp.heCorrect / n,
      agreement: cmp.agree / n,
      maxAbsError: cmp.maxAbsError,
      componentMs: report.ms,
      refreshMs,
      refreshes: { count: refresher?.count ?? 0, ciphertexts: refreshed, where: refresher ? describeRefreshes(refresher.events) : [] },
      timings: { keygenMs, encryptMs, evaluateMs, decryptMs, totalMs: performance.now() - t0 },
      latencyMsPerSample: pass,
      amortizedMsPerSample: pass / n,
      ciphertexts: { input: sent.length, output: outBytes.length, refreshed },
      bytes: {
        keys: keyBytes,
        clientToServer: keyBytes + sent.reduce((a, b) => a + b.length, 0) + (refresher?.bytesDown ?? 0),
        serverToClient: outBytes.reduce((a, b) => a + b.length, 0) + (refresher?.bytesUp ?? 0),
      },
      ctCtMults: report.ctCtMults,
      ptMults: report.ptMults,
      heapRecycles: server.recycled(),
      layers: opts.trace ? layers : null,
    };
  } catch (e) {
    failed = true;
    throw e;
  } finally {
    for (const p of plainParams.values()) p.dispose();
    // after a SEAL abort (its wasm heap full) the heap is in an undefined state and freeing
    // into it can spin forever: leave it to the process, which is about to report the error
    if (!failed) {
      server.close();
      client.delete();
    }
  }
}

interface EvaluationSide {
  be: CkksBackend<unknown>;
  /** run between nodes: replaces a grown SEAL heap (see recycling-backend.ts) */
  between: () => Promise<void>;
  recycled: () => { count: number; ms: number };
  close: () => void;
}

/**
 * The evaluator's backend, from the client's public bundle (bytes) only: it never sees the
 * secret key. Under SEAL it has a wasm instance of its own (the client keeps the thread's),
 * swapped for a fresh one between nodes once a heap's worth of ciphertexts has been made.
 */
async function evaluationBackend(bundle: ReturnType<ClientLike['publicBundle']>, mode: 'encrypt' | 'simulate', recycleBudget: number): Promise<EvaluationSide> {
  if (mode === 'simulate') {
    return { be: new SimBackend(bundle.params, { noise: true, seed: 11 }) as CkksBackend<unknown>, between: async () => {}, recycled: () => ({ count: 0, ms: 0 }), close: () => {} };
  }
  const be = await RecyclingSealBackend.create(bundle);
  return {
    be: be as CkksBackend<unknown>,
    between: async () => {
      await be.recycleIfGrown(recycleBudget);
    },
    recycled: () => ({ count: be.recycles, ms: be.recycleMs }),
    close: () => be.delete(),
  };
}

/** SEAL's wasm heap is capped at 4 GiB; the live tensors of a block take up to ~2 of it. */
const RECYCLE_BUDGET_BYTES = 2 ** 30;

export function fmt(v: number): string {
  return Math.abs(v) >= 1e-2 || v === 0 ? v.toFixed(4) : v.toExponential(2);
}

export { validateSequenceCheckpoint, type SequenceValidation } from './simulate-tall.js';
