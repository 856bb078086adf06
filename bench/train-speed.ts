/**
 * Training throughput of hepoly against PyTorch on this CPU, side by side (issue 5).
 *
 *   npm run bench:train [-- --models mlp,cnn,resnet --repeat 3 --steps 20 --profile]
 *
 * For each reference model of bench/torch_reference.py (mlp, cnn, resnet; same
 * architecture, built here from hepoly recipe model configs through buildGraph) it trains
 * batch 128 with Adam (lr 1e-3) on random data with the trainer's own step code
 * (`Run.trainEpoch` of src/train/loop.ts: batch copy, forward, variableGrads, applyGradients,
 * the per-step loss check), after a warm-up, in a fresh child process per measurement (so the
 * peak RSS is per model). In the same run, alternating with hepoly, it runs
 * `/usr/bin/python3 bench/torch_reference.py --model M --threads T` (when PyTorch imports)
 * for T = 1 and T = 2 (torch.set_num_threads), and prints a table - model, backend, hepoly
 * samples/s, then per PyTorch thread count its samples/s and the ratio, hepoly peak RSS -
 * then, as its last line, one JSON object {"mlp": ratio, "cnn": ratio, "resnet": ratio,
 * "mlp_t2": ratio, "cnn_t2": ratio, "resnet_t2": ratio, "backend": ...}: the plain keys are
 * ratios against PyTorch on 1 thread, the _t2 keys against PyTorch on 2 threads. Samples/s
 * are medians over --repeat runs (ranges shown); ratios are median(hepoly) / median(PyTorch).
 *
 * Options:
 *   --models a,b      subset of mlp,cnn,resnet
 *   --repeat N        measurements per side and model (default 3)
 *   --steps N         timed steps per hepoly measurement (default: 20, as torch_reference.py)
 *   --torch-steps N   timed steps per PyTorch measurement (default 20)
 *   --profile         also print a per-kernel profile (ms per step) of each model
 *   --backend B       force a hepoly backend (default: the trainer's choice)
 *   --threads N       hepoly training threads on wasm (sets HEPOLY_WASM_THREADS; default: the
 *                     trainer's default); a list "1,2" measures each, side by side
 *   --torch-threads L PyTorch intra-op thread counts, a list (torch_reference.py --threads N,
 *                     i.e. torch.set_num_threads; default 1,2); JSON keys get _tN for N > 1
 *   --no-torch        skip PyTorch
 * Internal: --worker MODEL runs one hepoly measurement and prints one JSON line.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus, loadavg } from 'node:os';
import { median } from '../src/util/stats.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..');
const TORCH_SCRIPT = resolve(HERE, 'torch_reference.py');
const PYTHON = '/usr/bin/python3';
const MODELS = ['mlp', 'cnn', 'resnet'] as const;
type ModelName = (typeof MODELS)[number];
const BATCH = 128;

/** The reference models as hepoly recipe model sections, with their input shapes. */
export const REFERENCE_MODELS: Record<ModelName, { model: Record<string, unknown>; inputShape: number[] }> = {
  // input 784 -> dense 256 -> quad -> dense 256 -> quad -> dense 10
  mlp: { model: { kind: 'mlp', hidden: [256, 256], activation: { kind: 'quad' } }, inputShape: [784] },
  // 28x28x1 -> conv3x3x32 same -> quad -> avgpool2 -> conv3x3x64 same -> quad -> avgpool2 -> flatten -> dense 10
  cnn: {
    model: {
      kind: 'cnn',
      activation: { kind: 'quad' },
      layers: [
        { type: 'conv', filters: 32, kernel: 3, padding: 'same' },
        { type: 'activation' },
        { type: 'avgpool', size: 2 },
        { type: 'conv', filters: 64, kernel: 3, padding: 'same' },
        { type: 'activation' },
        { type: 'avgpool', size: 2 },
        { type: 'dense' },
      ],
    },
    inputShape: [28, 28, 1],
  },
  // ResNet-14 (2 basic blocks per stage, 16/32/64), bias-free convs, BN, quad, 1x1 projections
  resnet: { model: { kind: 'resnet', depth: 14, widths: [16, 32, 64], skip: 'standard', post_add_bn: false, activation: { kind: 'quad' } }, inputShape: [32, 32, 3] },
};

interface Args {
  models: ModelName[];
  repeat: number;
  steps: number | null;
  torchSteps: number;
  profile: boolean;
  backend: string | null;
  threads: number[] | null;
  torchThreads: number[];
  torch: boolean;
  worker: ModelName | null;
  warmup: number;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { models: [...MODELS], repeat: 3, steps: null, torchSteps: 20, profile: false, backend: null, threads: null, torchThreads: [1, 2], torch: true, worker: null, warmup: 3 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    };
    if (k === '--models') a.models = v().split(',').map((m) => checkModel(m.trim()));
    else if (k === '--repeat') a.repeat = Math.max(1, Number(v()));
    else if (k === '--steps') a.steps = Math.max(1, Number(v()));
    else if (k === '--torch-steps') a.torchSteps = Math.max(1, Number(v()));
    else if (k === '--warmup') a.warmup = Math.max(1, Number(v()));
    else if (k === '--profile') a.profile = true;
    else if (k === '--backend') a.backend = v();
    else if (k === '--threads') a.threads = v().split(',').map((t) => Math.max(1, Math.floor(Number(t))));
    else if (k === '--torch-threads') a.torchThreads = v().split(',').map((t) => Math.max(1, Math.floor(Number(t))));
    else if (k === '--no-torch') a.torch = false;
    else if (k === '--worker') a.worker = checkModel(v());
    else if (k === '--') continue;
    else throw new Error(`unknown option ${k} (see the header of bench/train-speed.ts)`);
  }
  return a;
}

function checkModel(m: string): ModelName {
  if (!(MODELS as readonly string[]).includes(m)) throw new Error(`unknown model ${m}: use ${MODELS.join(', ')}`);
  return m as ModelName;
}

// ---------------------------------------------------------------------------------------------
// worker: one hepoly measurement in this process
// ---------------------------------------------------------------------------------------------

interface WorkerResult {
  model: ModelName;
  backend: string;
  threads: number;
  samples_per_s: number;
  step_ms: number[];
  rss_mb: number;
  profile?: { kernel: string; ms_per_step: number; calls_per_step: number }[];
  profile_total_ms?: number;
}

async function worker(name: ModelName, args: Args): Promise<WorkerResult> {
  const tf = await import('@tensorflow/tfjs-core');
  const { initBackend } = await import('../src/train/backend.js');
  const { RecipeSchema } = await import('../src/recipe/schema.js');
  const { buildGraph } = await import('../src/models/build.js');
  const { initWeights } = await import('../src/models/tf-interpreter.js');
  const { Run } = await import('../src/train/loop.js');
  const backend = await initBackend(args.backend ?? undefined);
  const ref = REFERENCE_MODELS[name];
  const recipe = RecipeSchema.parse({
    name: `bench-${name}`,
    seed: 0,
    data: { source: 'csv', path: '(random)', label: 'y' },
    model: ref.model,
    train: { batch: BATCH, optimizer: { kind: 'adam', lr: 1e-3 } },
  });
  const graph = buildGraph(recipe.model, ref.inputShape, 10);
  const run = new Run(graph, initWeights(graph, 0), recipe, 1);
  const per = ref.inputShape.reduce((x, y) => x * y, 1);
  const steps = args.steps ?? 20;
  const makeSplit = (batches: number) => {
    const count = batches * BATCH;
    const x = new Float32Array(count * per);
    let s = 12345;
    for (let i = 0; i < x.length; i++) {
      // cheap deterministic N(0,1)-ish values (sum of uniforms), as torch.randn
      s = (s * 1103515245 + 12345) >>> 0;
      const u1 = s / 4294967296;
      s = (s * 1103515245 + 12345) >>> 0;
      x[i] = (u1 + s / 4294967296 - 1) * 2.45;
    }
    const y = new Int32Array(count);
    for (let i = 0; i < count; i++) y[i] = (i * 7919) % 10;
    return { x, y, count };
  };
  const stepMs: number[] = [];
  let last = 0;
  const onBatch = () => {
    const now = performance.now();
    stepMs.push(now - last);
    last = now;
  };
  // warm-up (kernel setup, XNNPACK operator packing, wasm heap growth)
  last = performance.now();
  await run.trainEpoch(makeSplit(args.warmup), 0, 1e-3, onBatch);
  stepMs.length = 0;
  const split = makeSplit(steps);
  const t0 = performance.now();
  last = t0;
  await run.trainEpoch(split, 1, 1e-3, onBatch);
  const seconds = (performance.now() - t0) / 1000;
  const result: WorkerResult = {
    model: name,
    backend,
    threads: await threadsOf(tf, backend),
    samples_per_s: (steps * BATCH) / seconds,
    step_ms: stepMs.map((m) => Math.round(m * 10) / 10),
    rss_mb: 0,
  };
  if (args.profile) {
    const pSteps = Math.min(steps, name === 'mlp' ? 20 : 5);
    const pSplit = makeSplit(pSteps);
    const info = await tf.profile(async () => {
      await run.trainEpoch(pSplit, 2, 1e-3, () => {});
    });
    const agg = new Map<string, { ms: number; calls: number }>();
    let total = 0;
    for (const k of info.kernels) {
      const t = await k.kernelTimeMs;
      const ms = typeof t === 'number' ? t : 0;
      // tf.customGrad ops are profiled as 'forward', and their inner kernels again: not summed
      const nested = k.name === 'forward';
      const name = nested ? '(customGrad forward, nested)' : k.name;
      const e = agg.get(name) ?? { ms: 0, calls: 0 };
      e.ms += ms;
      e.calls++;
      agg.set(name, e);
      if (!nested) total += ms;
    }
    result.profile = [...agg.entries()]
      .map(([kernel, e]) => ({ kernel, ms_per_step: e.ms / pSteps, calls_per_step: e.calls / pSteps }))
      .sort((a, b) => b.ms_per_step - a.ms_per_step);
    result.profile_total_ms = total / pSteps;
  }
  run.dispose();
  result.rss_mb = process.resourceUsage().maxRSS / 1024;
  return result;
}

/** Threads of the wasm backend's training kernels (kernel-pool.ts; 0 for other backends). */
async function threadsOf(tf: typeof import('@tensorflow/tfjs-core'), backend: string): Promise<number> {
  if (backend !== 'wasm') return 0;
  const { kernelThreads } = await import('../src/train/kernels/index.js');
  return kernelThreads(tf.backend());
}

// ---------------------------------------------------------------------------------------------
// driver
// ---------------------------------------------------------------------------------------------

function runWorker(model: ModelName, args: Args, threads: number | null): WorkerResult {
  const argv = ['--import', 'tsx', fileURLToPath(import.meta.url), '--worker', model, '--warmup', String(args.warmup)];
  if (args.steps) argv.push('--steps', String(args.steps));
  if (args.profile) argv.push('--profile');
  if (args.backend) argv.push('--backend', args.backend);
  const env = threads ? { ...process.env, HEPOLY_WASM_THREADS: String(threads) } : process.env;
  const r = spawnSync(process.execPath, argv, { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20, env });
  const line = r.stdout.trim().split('\n').filter((l) => l.startsWith('{')).at(-1);
  if (r.status !== 0 || !line) throw new Error(`hepoly ${model} worker failed (exit ${r.status}):\n${r.stderr}\n${r.stdout}`);
  return JSON.parse(line) as WorkerResult;
}

interface TorchResult {
  samples_per_s: number;
  threads: number;
  torch: string;
}

function torchAvailable(): string | null {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  if (!existsSync(TORCH_SCRIPT)) return `${TORCH_SCRIPT} not found`;
  const r = spawnSync(PYTHON, ['-c', 'import torch; print(torch.__version__)'], { encoding: 'utf8' });
  return r.status === 0 ? null : 'PyTorch is not installed for /usr/bin/python3';
}

function runTorch(model: ModelName, steps: number, threads: number): TorchResult {
  const argv = [TORCH_SCRIPT, '--model', model, '--steps', String(steps), '--threads', String(threads)];
  const r = spawnSync(PYTHON, argv, { encoding: 'utf8' });
  const line = r.stdout.trim().split('\n').at(-1);
  if (r.status !== 0 || !line) throw new Error(`torch_reference.py --model ${model} failed (exit ${r.status}):\n${r.stderr}`);
  return JSON.parse(line) as TorchResult;
}

const fmt = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
const range = (xs: number[]) => (xs.length > 1 ? `${fmt(median(xs))} (${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))})` : fmt(xs[0]));

interface Row {
  model: ModelName;
  backend: string;
  threads: number;
  hepoly: number[];
  /** PyTorch samples/s per thread count asked for (args.torchThreads order) */
  torch: number[][];
  rss: number;
  profile?: WorkerResult['profile'];
  profileTotal?: number;
}

/** Measures every model: hepoly per --threads setting, then PyTorch per thread count, alternating. */
function measure(args: Args, withTorch: boolean): Row[] {
  const rows: Row[] = [];
  const settings = args.threads ?? [null];
  for (const model of args.models) {
    // the PyTorch figures are shared by the model's rows (one per hepoly setting)
    const torch: number[][] = args.torchThreads.map(() => []);
    const mine = settings.map(() => {
      const row: Row = { model, backend: '', threads: 0, hepoly: [], torch, rss: 0 };
      rows.push(row);
      return row;
    });
    for (let r = 0; r < args.repeat; r++) {
      // alternate the sides so that they see the same machine load
      mine.forEach((row, i) => {
        const h = runWorker(model, { ...args, profile: args.profile && r === 0 }, settings[i]);
        row.hepoly.push(h.samples_per_s);
        row.backend = h.backend;
        row.threads = h.threads;
        row.rss = Math.max(row.rss, h.rss_mb);
        if (h.profile) {
          row.profile = h.profile;
          row.profileTotal = h.profile_total_ms;
        }
        console.error(`  ${model} #${r + 1}: hepoly (${h.backend}, ${h.threads} thr) ${fmt(h.samples_per_s)} samples/s (step ms: ${h.step_ms.join(' ')}) load ${loadavg()[0].toFixed(1)}`);
      });
      if (!withTorch) continue;
      args.torchThreads.forEach((threads, k) => {
        const t = runTorch(model, args.torchSteps, threads);
        torch[k].push(t.samples_per_s);
        console.error(`  ${model} #${r + 1}: torch ${fmt(t.samples_per_s)} samples/s (${t.threads} thr) load ${loadavg()[0].toFixed(1)}`);
      });
    }
  }
  return rows;
}

function printProfiles(rows: Row[]): void {
  for (const r of rows) {
    if (!r.profile) continue;
    console.log(`\nper-kernel profile, ${r.model} (${r.backend}, ${r.threads} thr), ms per training step (sum of kernels ${r.profileTotal!.toFixed(1)} ms):`);
    for (const k of r.profile.slice(0, 16)) console.log(`  ${k.kernel.padEnd(32)} ${k.ms_per_step.toFixed(1).padStart(8)} ms  ${k.calls_per_step.toFixed(0).padStart(5)} calls`);
  }
  console.log('');
}

const ratioOf = (r: Row, k: number): number | null => (r.torch[k]?.length ? median(r.hepoly) / median(r.torch[k]) : null);

/** Our figure, then per PyTorch thread count the anchor's figure and the ratio. */
function printTable(rows: Row[], torchThreads: number[]): void {
  const header = ['model', 'backend', 'hepoly samples/s', ...torchThreads.flatMap((t) => [`PyTorch ${t} thr samples/s`, `ratio vs ${t} thr`]), 'hepoly peak RSS'];
  const table = rows.map((r) => [
    r.model,
    r.backend === 'wasm' ? `wasm (${r.threads} thread${r.threads === 1 ? '' : 's'})` : r.backend,
    range(r.hepoly),
    ...torchThreads.flatMap((_, k) => {
      const ratio = ratioOf(r, k);
      return [r.torch[k].length ? range(r.torch[k]) : 'n/a', ratio === null ? 'n/a' : ratio.toFixed(2)];
    }),
    `${r.rss.toFixed(0)} MB`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const row of table) console.log(line(row));
}

/** {"mlp": ratio vs 1 thread, ..., "mlp_t2": ratio vs 2 threads, ..., "backend"}: per key the best hepoly setting. */
function summaryLine(rows: Row[], torchThreads: number[]): Record<string, number | string | null> {
  const summary: Record<string, number | string | null> = {};
  for (const r of rows) {
    torchThreads.forEach((t, k) => {
      const key = t === 1 ? r.model : `${r.model}_t${t}`;
      const raw = ratioOf(r, k);
      const ratio = raw === null ? null : Math.round(raw * 1000) / 1000;
      const prev = summary[key];
      if (prev === undefined || (ratio !== null && (prev === null || ratio > (prev as number)))) summary[key] = ratio;
    });
  }
  summary.backend = rows[0]?.backend ?? 'none';
  return summary;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.worker) {
    const r = await worker(args.worker, args);
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  const noTorch = args.torch ? torchAvailable() : 'skipped (--no-torch)';
  if (noTorch && args.torch) {
    console.log(`PyTorch: ${noTorch}. For the side-by-side numbers install it: apt-get install -y python3-torch (then it runs as ${PYTHON}).`);
  }
  const load = () => loadavg().map((l) => l.toFixed(1)).join(' ');
  console.log(`machine: ${cpus().length} x ${cpus()[0]?.model ?? '?'}, node ${process.version}, load average ${load()}, ${new Date().toISOString()}`);
  const rows = measure(args, !noTorch);
  if (args.profile) printProfiles(rows);
  printTable(rows, args.torchThreads);
  console.log(`load average at the end: ${load()}`);
  console.log(JSON.stringify(summaryLine(rows, args.torchThreads)));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
