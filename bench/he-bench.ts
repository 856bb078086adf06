/**
 * `npm run bench:he`: encrypted inference of the benchmark checkpoints with the packing the
 * optimizer picks (`--packing auto`), and the evaluator's overhead: its measured evaluation
 * time over the time of the same node-seal operations (same counts, same parameters) timed
 * alone in this run. A ratio near 1 means the time goes into SEAL itself, not into packing,
 * scheduling, serialization or thread hand-offs around it; the target is <= 1.15.
 *
 *   npm run bench:he -- [--quick] [--only he-bench-mnist,fmnist-mlp,OTHER-CHECKPOINT] [--samples N] [--packing auto|batch|sample|stacked[:M]|interleaved[:M]] [--json FILE]
 *
 * The server runs on one worker thread so that evaluation time and operation time are both
 * single-thread times. A missing checkpoint is reported with the command that trains it. The
 * last line of stdout is one JSON object with every row.
 */
import { existsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { validate, fmtMs, type PackingChoice, type ValidationReport } from '../src/he/validate.js';
import { HEClient } from '../src/he/client.js';
import { loadEvaluationKeys } from '../src/he/keys.js';
import { SealBackend } from '../src/he/seal-backend.js';
import { type HeParams, levelsOf } from '../src/he/params.js';
import type { CkksBackend } from '../src/he/backend.js';
import type { CipherText, PlainText } from '../src/he/seal.js';
import { loadCheckpoint } from '../src/train/checkpoint.js';
import { compileProgram } from '../src/he/compile.js';
import type { HeProgram } from '../src/he/program.js';
import { programSegments, refreshCiphertexts, refreshPointName, segmentProgram } from '../src/he/refresh.js';
import { SampleEvaluator, packSample, planSample } from '../src/he/packing/sample.js';
import { packBatch } from '../src/he/packing/batch.js';
import { runBatchGrouped } from '../src/he/tiles/batch-pass.js';
import { stackForSlots } from '../src/he/tiles/stacked.js';
import { speedProbe } from '../src/he/tiles/calibrate.js';
import { showProgress } from '../src/cli/progress.js';

interface Model {
  name: string;
  recipe: string;
  samples: number;
  quickSamples: number;
  /**
   * 'client': deeper than any 128-bit-secure chain, so validated with `--refresh client`
   * (cut into segments; the client decrypts and re-encrypts in between)
   */
  refresh?: 'client';
}

const MODELS: Model[] = [
  { name: 'he-bench-mnist', recipe: 'recipes/he-bench-mnist.yaml', samples: 32, quickSamples: 8 },
  { name: 'fmnist-mlp', recipe: 'recipes/fmnist-mlp.yaml', samples: 16, quickSamples: 4 },
  { name: 'fmnist-cnn', recipe: 'recipes/fmnist-cnn.yaml', samples: 4, quickSamples: 2 },
  { name: 'resnet-poly', recipe: 'recipes/resnet-poly.yaml (after recipes/resnet-relu.yaml)', samples: 2, quickSamples: 1, refresh: 'client' },
];

/** Published figures, with their hardware, to read next to ours (MNIST; ours are Fashion-MNIST). */
const ANCHORS = [
  { system: 'CryptoNets (Gilad-Bachrach et al. 2016)', task: 'MNIST CNN, batch of 8192, YASHE', latency: '~250 s per batch', amortized: '~30 ms', hardware: 'Intel Xeon E5-1620 3.5 GHz, 16 GB' },
  { system: 'LoLa (Brutzkus et al. 2019)', task: 'MNIST CNN, one image, SEAL CKKS', latency: '~2.2 s', amortized: '~2.2 s', hardware: 'Azure B8ms VM, 8 vCPUs' },
  { system: 'TenSEAL CKKS tutorial', task: 'MNIST conv7x7x4 s3-square-dense64-square-dense10, N=8192', latency: '~2 s', amortized: '~2 s', hardware: 'laptop Intel i7' },
  { system: 'HElayers (Aharoni et al.)', task: 'AlexNet, CKKS tile tensors', latency: '~3 min', amortized: '-', hardware: 'multi-core Xeon server (per the HElayers paper)' },
];

function args() {
  const a = process.argv.slice(2);
  const val = (k: string) => {
    const i = a.indexOf(k);
    return i >= 0 ? a[i + 1] : undefined;
  };
  const samples = val('--samples');
  const packing = (val('--packing') ?? 'auto') as PackingChoice;
  return { quick: a.includes('--quick'), only: val('--only')?.split(','), json: val('--json'), samples: samples ? Number(samples) : undefined, packing };
}

/**
 * The overhead ratio, measured exactly: the evaluator runs one pass in this process on a
 * backend that records every SEAL operation with the level it runs at (and times the pass);
 * then each (operation, level) is timed alone on fresh ciphertexts, and the counts times
 * those times give what the same operations cost without the evaluator around them. Both
 * sides are CPU time of this one thread (wall time on a shared machine measures the load).
 * A program cut for `--refresh client` runs segment by segment; the client refreshes between
 * segments (decrypt, encrypt again at the top level) stay outside the timed window, as does
 * encoding each segment's diagonals (server setup, as in the worker): the pass is server
 * evaluation only.
 */
const OPS = [
  'mulPlain', 'mulPlainAddInPlace', 'mulConst', 'mulConstAddInPlace', 'add', 'addInPlace', 'subInPlace', 'negateInPlace',
  'addConstInPlace', 'addPlainInPlace', 'addVecInPlace', 'multiply', 'square', 'rescaleInPlace', 'modSwitchInPlace', 'rotate', 'clone',
] as const;
type OpName = (typeof OPS)[number];

/**
 * CPU time of this process: on a shared machine the wall time of a pass depends on what else
 * runs, while SEAL's work in this single thread does not.
 */
function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

interface Profile {
  /** CPU time of the evaluator's pass (in process, one thread) */
  passMs: number;
  /** "op@level" -> calls */
  calls: Map<string, number>;
  /** the same calls, each (op, level) timed alone */
  aloneMs: number;
  /**
   * The SEAL speed probe (calibrate.ts) around the reported pass and around the operations
   * alone (the mean of the probes on both sides): on a shared host SEAL ran up to 1.6x slower for a while, which moved
   * the ratio by as much (fmnist-cnn 0.98, then 0.70 an hour later)
   */
  passProbeMs: number;
  aloneProbeMs: number;
}

/** pass time over the same operations alone, these brought to the pass's SEAL speed */
function overheadRatio(p: Pick<Profile, 'passMs' | 'aloneMs' | 'passProbeMs' | 'aloneProbeMs'>): number {
  return p.passMs / (p.aloneMs * (p.passProbeMs / p.aloneProbeMs));
}

function recording(be: SealBackend, calls: Map<string, number>): SealBackend {
  return new Proxy(be, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      if (!(OPS as readonly string[]).includes(prop as string)) return v.bind(target);
      return (...a: unknown[]) => {
        // the target level of a mod switch and the step of a rotation (its Galois key)
        const extra = prop === 'modSwitchInPlace' || prop === 'rotate' ? `>${a[1]}` : '';
        const key = `${String(prop)}@${target.levelOf(a[0] as CipherText)}${extra}`;
        calls.set(key, (calls.get(key) ?? 0) + 1);
        return v.apply(target, a);
      };
    },
  });
}

async function profilePass(dir: string, r: ValidationReport): Promise<Profile> {
  const ckpt = loadCheckpoint(dir);
  const compiled = compileProgram(ckpt.graph, ckpt.weights, { source: dir });
  const params: HeParams = { polyModulusDegree: r.params.polyModulusDegree, coeffModulusBits: r.params.coeffModulusBits, scaleBits: r.params.scaleBits };
  const validated = programAsValidated(compiled, params, r);
  const client = await HEClient.create(params);
  const slots = client.slots;
  // stacked or interleaved xM: the server ran sample packing of the M-sample program
  const m = r.packing === 'batch' || r.packing === 'sample' ? 1 : r.samplesPerPass;
  const order = r.packing.startsWith('interleaved') ? 'interleave' : 'block';
  const program = m > 1 ? stackForSlots(validated, m, slots, order).program : validated;
  const plan = r.packing !== 'batch' ? planSample(program, slots) : null;
  const bundle = client.publicBundle(plan ? plan.rotationSteps : [1]);
  const base = new SealBackend(client.ctx, loadEvaluationKeys(client.ctx, bundle));
  const calls = new Map<string, number>();
  const be = recording(base, calls);
  const x = Float32Array.from({ length: program.inputShape.reduce((a, b) => a * b, 1) }, (_, i) => ((i * 7919) % 255) / 255);
  if (plan) {
    const ev = new SampleEvaluator(program, plan, be as unknown as CkksBackend<CipherText, PlainText>);
    const segs = programSegments(program);
    const once = () => {
      const ins = client.encrypt(packSample(plan, program, x)).map((b) => base.deserialize(b));
      if (segs.length === 1) {
        const t = cpuMs();
        const outs = ev.run(ins);
        const ms = cpuMs() - t;
        for (const c of [...ins, ...outs]) base.free(c);
        return ms;
      }
      // segment by segment, as the server's runSegmented; only runRange is timed
      let given = new Map<number, CipherText[]>([[program.input, ins]]);
      let ms = 0;
      for (let j = 0; j < segs.length; j++) {
        const seg = segs[j];
        ev.prepareRange(seg.from, seg.to); // this segment's diagonals: setup, as in the worker
        const t = cpuMs();
        const kept = ev.runRange(given, seg.from, seg.to, seg.outputs);
        ms += cpuMs() - t;
        for (const cts of given.values()) for (const c of cts) base.free(c);
        if (j === segs.length - 1) {
          for (const cts of kept.values()) for (const c of cts) base.free(c);
          break;
        }
        // the client refresh (decrypt, encrypt again at the top level), outside the timed window
        given = new Map();
        for (const { src, out } of program.refreshes![j].tensors) {
          const sent = kept.get(src)!.map((c) => base.serialize(c));
          given.set(out, refreshCiphertexts(client, sent).map((b) => base.deserialize(b)));
        }
        for (const cts of kept.values()) for (const c of cts) base.free(c);
      }
      return ms;
    };
    once(); // warm: diagonals are encoded once per program
    // three rounds of (pass, the same operations alone) and the round with the median ratio:
    // the host's speed drifts over seconds, so each pass is compared with operations timed
    // next to it, at the speed the probes say each ran at
    const rounds: Omit<Profile, 'calls'>[] = [];
    for (let i = 0; i < 3; i++) {
      calls.clear();
      rounds.push(await probedRound(once, base, client, calls));
    }
    ev.delete();
    const median = rounds.sort((a, b) => overheadRatio(a) - overheadRatio(b))[1];
    base.delete();
    client.delete();
    return { ...median, calls };
  }
  const ins = client.encrypt(packBatch(x, x.length, 0, 1, slots)).map((b) => base.deserialize(b));
  const round = await probedRound(
    () => {
      const t = cpuMs();
      const out = runBatchGrouped(program, be as unknown as CkksBackend<CipherText>, ins, { workers: 1, N: slots * 2 });
      const ms = cpuMs() - t;
      for (const c of out) if (c) base.free(c);
      return ms;
    },
    base,
    client,
    calls,
  );
  base.delete();
  client.delete();
  return { ...round, calls };
}

/**
 * One timed pass (`pass` returns its CPU ms and records its calls), then the same calls
 * timed alone, with a SEAL speed probe before, between and after: each half's speed is the
 * mean of the probes on both sides of it.
 */
async function probedRound(pass: () => number, be: SealBackend, client: HEClient, calls: Map<string, number>): Promise<Omit<Profile, 'calls'>> {
  const before = await speedProbe();
  const passMs = pass();
  const between = await speedProbe();
  const aloneMs = timeCallsAlone(be, client, calls);
  const after = await speedProbe();
  return { passMs, aloneMs, passProbeMs: (before + between) / 2, aloneProbeMs: (between + after) / 2 };
}

/**
 * The program validate() evaluated: the compiled one, or for `--refresh client` the same cut.
 * validate() cuts with segmentProgram(compiled, L) and then sizes the chain to the cut
 * program's depth, so the report's parameters give levelsOf(params) = that depth, and cutting
 * at that depth gives the same segments (the greedy cut only fires where a step would exceed
 * the depth the first cut reached). Checked against the refresh points the report names.
 */
function programAsValidated(compiled: HeProgram, params: HeParams, r: ValidationReport): HeProgram {
  const levels = levelsOf(params);
  if (!r.refreshes?.perPass) {
    if (compiled.depth > levels) throw new Error(`internal: depth ${compiled.depth} > ${levels} levels, but the report has no refreshes`);
    return compiled;
  }
  const program = segmentProgram(compiled, levels);
  const names = (program.refreshes ?? []).map((p) => refreshPointName(program, p));
  const want = r.refreshes.points.map((p) => p.before);
  if (names.length !== want.length || names.some((n, i) => n !== want[i])) {
    throw new Error(`internal: the bench's cut (${names.length} refreshes) differs from validate()'s (${want.length}): ${names.join(' | ')} vs ${want.join(' | ')}`);
  }
  return program;
}

/** Each recorded (operation, level) timed alone on fresh ciphertexts at that level. */
function timeCallsAlone(be: SealBackend, client: HEClient, calls: Map<string, number>): number {
  const values = Float64Array.from({ length: be.slots }, (_, i) => Math.sin(i) * 0.5);
  const fresh = (level: number): CipherText => {
    const c = be.deserialize(client.encrypt([values])[0]);
    be.modSwitchInPlace(c, level);
    return c;
  };
  const reps = 5;
  const time = (f: () => void): number => {
    f();
    const t = cpuMs();
    for (let i = 0; i < reps; i++) f();
    return (cpuMs() - t) / reps;
  };
  /** an in-place op on a clone, less the clone */
  const inPlace = (c: CipherText, f: (d: CipherText) => void) =>
    Math.max(0, time(() => { const d = be.clone(c); f(d); be.free(d); }) - time(() => be.free(be.clone(c))));
  let total = 0;
  for (const [key, n] of calls) {
    const [op, rest] = key.split('@') as [OpName, string];
    const [lv, to] = rest.split('>').map(Number);
    const c = fresh(lv);
    const other = be.clone(c);
    const pt = be.encode(values, be.scaleOf(c), lv);
    let ms = 0;
    switch (op) {
      case 'mulPlain': ms = time(() => be.free(be.mulPlain(c, pt))); break;
      case 'mulConst': ms = time(() => be.free(be.mulConst(c, 0.37, be.scale))); break;
      case 'mulPlainAddInPlace': ms = time(() => be.free(be.mulPlain(c, pt))) + inPlace(c, (d) => be.addInPlace(d, other)); break;
      case 'mulConstAddInPlace': ms = time(() => be.free(be.mulConst(c, 0.37, be.scale))) + inPlace(c, (d) => be.addInPlace(d, other)); break;
      case 'add': ms = time(() => be.free(be.add(c, other))); break;
      case 'addInPlace': ms = inPlace(c, (d) => be.addInPlace(d, other)); break;
      case 'subInPlace': ms = inPlace(c, (d) => be.subInPlace(d, other)); break;
      case 'negateInPlace': ms = inPlace(c, (d) => be.negateInPlace(d)); break;
      case 'addConstInPlace': ms = inPlace(c, (d) => be.addConstInPlace(d, 0.25)); break;
      case 'addPlainInPlace': ms = inPlace(c, (d) => be.addPlainInPlace(d, pt)); break;
      case 'addVecInPlace': ms = inPlace(c, (d) => be.addVecInPlace(d, values)); break;
      case 'multiply': ms = time(() => be.free(be.multiply(c, other))); break;
      case 'square': ms = time(() => be.free(be.square(c))); break;
      case 'rescaleInPlace': ms = inPlace(c, (d) => be.rescaleInPlace(d)); break;
      case 'modSwitchInPlace': ms = inPlace(c, (d) => be.modSwitchInPlace(d, to)); break;
      case 'rotate': ms = time(() => be.free(be.rotate(c, to))); break;
      case 'clone': ms = time(() => be.free(be.clone(c))); break;
    }
    total += n * ms;
    if (process.env.HE_BENCH_DEBUG) process.stderr.write(`    ${key}: ${n} x ${ms.toFixed(3)} ms\n`);
    be.freePlain(pt);
    be.free(other);
    be.free(c);
  }
  return total;
}


interface Row {
  model: string;
  packing: string;
  samples: number;
  plaintext_accuracy: number;
  encrypted_accuracy: number;
  latency_ms_per_sample: number;
  amortized_ms_per_sample: number;
  ciphertexts_per_pass: number;
  rotations: number;
  ct_ct_mults: number;
  pt_mults: number;
  additions: number;
  rescales: number;
  poly_modulus_degree: number;
  /** `--refresh client` round trips per sample (0: the chain holds the whole program) */
  refreshes_per_sample: number;
  /** the server's evaluation time per pass (worker thread, ciphertext transfer included) */
  server_ms_per_pass: number;
  /** one pass of the evaluator in this process, and the same SEAL operations timed alone */
  pass_ms: number;
  ops_alone_ms: number;
  /** how much faster SEAL ran while the operations were timed alone than during the pass (speed probes) */
  speed_alone_over_pass: number;
  /** pass_ms / (ops_alone_ms at the pass's speed): the evaluator's own overhead (target <= 1.15) */
  overhead_ratio: number;
  /**
   * server_ms_per_pass (wall) / pass_ms (CPU): 1 plus the worker hand-off and (de)serialization
   * on an idle machine; far above 1 when other processes share the cores
   */
  server_wall_over_cpu: number;
  /** the server worker's SEAL wasm heap: keys, encoded plaintexts and ciphertexts (this model only) */
  worker_heap_mb: number;
  /** the whole bench process so far (monotonic over the models of one run) */
  peak_rss_mb: number;
}

function toRow(name: string, r: ValidationReport, prof: Profile): Row {
  const passes = Math.ceil(r.samples / r.samplesPerPass);
  const server = r.timings.evaluateMs / passes;
  return {
    model: name,
    packing: r.packing,
    samples: r.samples,
    plaintext_accuracy: r.plaintextAccuracy,
    encrypted_accuracy: r.encryptedAccuracy,
    latency_ms_per_sample: r.latencyMsPerSample,
    amortized_ms_per_sample: r.amortizedMsPerSample,
    ciphertexts_per_pass: r.ciphertexts.perPass,
    rotations: r.ops.rotations,
    ct_ct_mults: r.ops.ctCtMults,
    pt_mults: r.ops.ptMults,
    additions: r.ops.additions,
    rescales: r.ops.rescales,
    poly_modulus_degree: r.params.polyModulusDegree,
    refreshes_per_sample: r.refreshes?.perPass ?? 0,
    server_ms_per_pass: server,
    pass_ms: prof.passMs,
    ops_alone_ms: prof.aloneMs,
    speed_alone_over_pass: prof.passProbeMs / prof.aloneProbeMs,
    overhead_ratio: overheadRatio(prof),
    server_wall_over_cpu: server / prof.passMs,
    worker_heap_mb: r.workerHeapMb,
    peak_rss_mb: r.peakRssMb,
  };
}

function table(rows: Row[]): string {
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  const head = '| model | packing | samples | plain / HE acc | latency/sample | amortized/sample | ct per pass | rotations | ct-ct mults | pt mults | additions | rescales | N | refreshes / sample | server memory (SEAL heap) | pass CPU (in process) | same ops alone (CPU) | SEAL speed alone / pass | overhead ratio | server pass (wall) | wall / CPU |';
  const lines = [head, `|${'---|'.repeat(21)}`];
  for (const r of rows) {
    lines.push(
      `| ${r.model} | ${r.packing} | ${r.samples} | ${pct(r.plaintext_accuracy)} / ${pct(r.encrypted_accuracy)} | ${fmtMs(r.latency_ms_per_sample)} | ${fmtMs(r.amortized_ms_per_sample)} | ${r.ciphertexts_per_pass} | ${r.rotations} | ${r.ct_ct_mults} | ${r.pt_mults} | ${r.additions} | ${r.rescales} | ${r.poly_modulus_degree} | ${r.refreshes_per_sample} | ${(r.worker_heap_mb / 1024).toFixed(2)} GiB | ${fmtMs(r.pass_ms)} | ${fmtMs(r.ops_alone_ms)} | ${r.speed_alone_over_pass.toFixed(2)}x | ${r.overhead_ratio.toFixed(3)}${r.overhead_ratio <= 1.15 ? '' : ' (> 1.15)'} | ${fmtMs(r.server_ms_per_pass)} | ${r.server_wall_over_cpu.toFixed(2)} |`,
    );
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const o = args();
  const rows: Row[] = [];
  const missing: { model: string; train: string }[] = [];
  // --only may also name other checkpoints (e.g. pruned variants) to measure the same way
  const extra: Model[] = (o.only ?? []).filter((n) => !MODELS.some((m) => m.name === n)).map((name) => ({ name, recipe: 'its recipe', samples: 4, quickSamples: 2 }));
  for (const m of [...MODELS, ...extra]) {
    if (o.only && !o.only.includes(m.name)) continue;
    const dir = join('checkpoints', m.name);
    if (!existsSync(join(dir, 'model.json'))) {
      missing.push({ model: m.name, train: `hepoly train ${m.recipe}` });
      process.stderr.write(`${dir} is missing: train it with \`hepoly train ${m.recipe}\`; skipped\n`);
      continue;
    }
    const samples = o.samples ?? (o.quick ? m.quickSamples : m.samples);
    const refresh = m.refresh;
    process.stderr.write(`he-validate ${dir} --packing ${o.packing} --samples ${samples} --workers 1${refresh ? ` --refresh ${refresh}` : ''} ...\n`);
    try {
      // the bench logs to stderr (stdout is the table): progress goes there too
      const progress = showProgress({ tty: !!process.stderr.isTTY, stream: process.stderr, task: `bench:he ${m.name}` });
      const r = await validate({
        checkpoint: dir,
        samples,
        packing: o.packing,
        workers: 1,
        refresh,
        log: (l) => {
          progress.pause();
          process.stderr.write(`  ${l}\n`);
        },
      }).finally(() => progress.stop());
      process.stderr.write('  profiling one pass in process, then its SEAL operations alone ...\n');
      rows.push(toRow(m.name, r, await profilePass(dir, r)));
      process.stderr.write(`${table(rows.slice(-1)).split('\n').pop()}\n`);
    } catch (e) {
      // one model that cannot run (e.g. too deep for any parameters) does not end the bench
      process.stderr.write(`  ${m.name}: ${(e as Error).message}\n`);
      missing.push({ model: m.name, train: `failed: ${(e as Error).message.split('\n')[0]}` });
    }
  }
  const load = os.loadavg()[0];
  const lines = [
    '## Encrypted inference (node-seal 6.0.3, SEAL 4.1 CKKS, 128-bit security, one worker thread)',
    '',
    `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? 'unknown CPU'}, load average ${load.toFixed(1)} at the end of the run. Latencies are wall time; the overhead ratio is CPU time of one pass over CPU time of its SEAL operations alone, brought to the pass's speed (a SEAL rotation timed before each: on this shared host SEAL runs up to 1.6x slower at times).`,
    '',
    table(rows),
    '',
  ];
  lines.push('Published anchors (reference only: MNIST, native SEAL or other libraries, other hardware):', '', '| system | task | latency | amortized | hardware |', '|---|---|---|---|---|');
  for (const a of ANCHORS) lines.push(`| ${a.system} | ${a.task} | ${a.latency} | ${a.amortized} | ${a.hardware} |`);
  for (const m of missing) lines.push('', `${m.model}: ${m.train.startsWith('failed') ? m.train : `checkpoint missing, train it with \`${m.train}\``}`);
  console.log(lines.join('\n'));
  const summary = { rows, anchors: ANCHORS, missing, overhead_target: 1.15, cores: os.cpus().length, load_average: load };
  if (o.json) writeFileSync(o.json, JSON.stringify(summary, null, 2));
  console.log(JSON.stringify(summary));
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
