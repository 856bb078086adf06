import { spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { loadRecipe } from '../recipe/load.js';
import { packageRoot, shortPath } from '../util/paths.js';
import { HepolyError } from '../util/errors.js';
import { loadCheckpoint } from '../train/checkpoint.js';
import { evaluateSplit, heldOutSplit, toParams } from '../train/evaluate.js';
import { initBackend } from '../train/backend.js';
import { predict } from '../models/tf-interpreter.js';
import { writePartySplits } from './horizontal/split-data.js';
import { averagePrecision, classProbability } from './metrics.js';
import type { PartyResult } from './horizontal/party.js';

/**
 * `hepoly federate RECIPE`: every role of a run on this machine, each its own OS process on
 * loopback (the coordinator first, on a free port, then one process per party), exactly what
 * running the roles on separate machines does. Collects each party's JSON result and, for a
 * horizontal run, measures the checkpoint on data.path's held-out split, which no party holds.
 */
export interface LaunchOptions {
  recipe: string;
  set?: string[];
  out?: string;
  log?: (line: string) => void;
  /** extra environment for the children (tests: drop hooks, recorders) */
  env?: NodeJS.ProcessEnv;
}

export interface FederatedResult {
  checkpoint: string | null;
  partition: string;
  parties: number;
  rounds: number;
  val_accuracy: number;
  test_accuracy: number | null;
  auprc: number | null;
  epsilon: number | null;
  delta: number | null;
  bytes_per_round: number;
  bytes_per_party_per_round: Record<string, number>;
  seconds: number;
  seconds_per_round: number;
  dropped: string[];
  party_results: PartyResult[];
}

export async function launchFederation(opts: LaunchOptions): Promise<FederatedResult> {
  const started = performance.now();
  const log = opts.log ?? (() => undefined);
  const { recipe, file } = loadRecipe(opts.recipe, opts.set ?? []);
  const fed = recipe.federated;
  if (!fed) throw new HepolyError(`${shortPath(file)}: no federated section. Add federated: {partition, parties, ...} (see docs/federated.md), or train it with hepoly train`);
  if (fed.split && fed.partition === 'horizontal') {
    for (const s of writePartySplits(recipe, shortPath(file))) log(`split: ${s.party} gets ${s.rows} rows -> ${s.path}`);
  }
  const bin = join(packageRoot(), 'bin', 'hepoly.js');
  const setArgs = (opts.set ?? []).flatMap((s) => ['--set', s]);
  const env = { ...process.env, ...opts.env };
  const coordinator = spawn(process.execPath, [bin, 'federate', 'coordinator', file, '--port', '0', ...setArgs], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const children: ChildProcess[] = [coordinator];
  try {
    const coordOut = collect(coordinator);
    const url = await firstMatch(coordinator, coordOut, /listening on (http:\/\/\S+)/);
    log(`coordinator: ${url}`);
    const writer = fed.partition === 'vertical' ? fed.parties.find((p) => p.label)?.name : fed.parties[0].name;
    const runs = fed.parties.map((p) => {
      const args = [bin, 'federate', 'party', file, '--name', p.name, '--coordinator', url, '--json', ...setArgs];
      if (opts.out && p.name === writer) args.push('--out', resolve(opts.out));
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
      children.push(child);
      const out = collect(child, p.name === writer ? log : undefined);
      return { name: p.name, child, out, exit: exited(child) };
    });
    const codes = await Promise.all(runs.map((r) => r.exit));
    // the coordinator ends when every party is done; if they all crashed it would wait on
    const grace = setTimeout(() => coordinator.kill(), 20000);
    await exited(coordinator);
    clearTimeout(grace);
    const results: PartyResult[] = [];
    const dropped: string[] = [];
    const errors: string[] = [];
    runs.forEach((r, i) => {
      const last = r.out.stdout.trim().split('\n').pop() ?? '';
      if (codes[i] === 0 && last.startsWith('{')) results.push(JSON.parse(last) as PartyResult);
      else {
        dropped.push(r.name);
        const err = r.out.stderr.split('\n').find((l) => l.startsWith('error:'));
        // a crash without a hepoly error line: show what the process printed last
        errors.push(err ? err.replace(/^error: /, '') : `party ${r.name} exited with code ${codes[i]}: ${r.out.stderr.trim().slice(-600) || '(no output)'}`);
      }
    });
    const main = results.find((r) => r.party === writer);
    if (!main) {
      const origin = errors.find((e) => !/stopped the run|cannot reach the coordinator/.test(e)) ?? errors[0] ?? `party ${writer} ended without a result`;
      throw new HepolyError(origin);
    }
    for (const d of dropped) log(`note: party ${d} left the run early; the rounds went on without it`);
    const heldOut = main.checkpoint && fed.partition === 'horizontal' ? await measureHeldOut(main.checkpoint) : { accuracy: main.test_accuracy ?? null, auprc: main.auprc ?? null };
    const perParty = Object.fromEntries(results.map((r) => [r.party, (r.bytes_sent + r.bytes_received) / r.rounds]));
    return {
      checkpoint: main.checkpoint,
      partition: fed.partition,
      parties: fed.parties.length,
      rounds: main.rounds,
      val_accuracy: main.val_accuracy,
      test_accuracy: heldOut.accuracy,
      auprc: heldOut.auprc,
      epsilon: main.epsilon,
      delta: main.delta,
      bytes_per_round: Object.values(perParty).reduce((a, b) => a + b, 0),
      bytes_per_party_per_round: perParty,
      seconds: (performance.now() - started) / 1000,
      seconds_per_round: main.round_seconds.reduce((a, b) => a + b, 0) / Math.max(1, main.round_seconds.length),
      dropped,
      party_results: results,
    };
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill();
  }
}

/** Accuracy and (binary) AUPRC of a checkpoint on its data's held-out split. */
export async function measureHeldOut(dir: string): Promise<{ accuracy: number; auprc: number | null }> {
  await initBackend();
  const ckpt = loadCheckpoint(dir);
  const split = await heldOutSplit(ckpt);
  const params = toParams(ckpt.weights);
  try {
    const r = evaluateSplit(ckpt.graph, params, split);
    let auprc: number | null = null;
    if (ckpt.graph.classes === 2) {
      const logits = predict(ckpt.graph, ckpt.weights, split.x, split.count);
      auprc = averagePrecision(classProbability(logits, 2, 1), Array.from(split.y, (v) => v === 1));
    }
    return { accuracy: r.accuracy, auprc };
  } finally {
    for (const t of params.values()) t.dispose();
  }
}

function collect(child: ChildProcess, onLine?: (l: string) => void): { stdout: string; stderr: string } {
  const acc = { stdout: '', stderr: '' };
  let pending = '';
  child.stdout!.on('data', (d: Buffer) => {
    acc.stdout += d;
    if (!onLine) return;
    pending += d;
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const l of lines) if (l && !l.startsWith('{')) onLine(l);
  });
  child.stderr!.on('data', (d: Buffer) => (acc.stderr += d));
  return acc;
}

function exited(child: ChildProcess): Promise<number> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((r) => child.once('exit', (code) => r(code ?? 1)));
}

function firstMatch(child: ChildProcess, out: { stdout: string; stderr: string }, re: RegExp): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const check = () => {
      const m = re.exec(out.stdout);
      if (m) {
        child.stdout!.off('data', check);
        resolvePromise(m[1]);
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', (code) => {
      const err = out.stderr.split('\n').find((l) => l.startsWith('error:'));
      reject(new HepolyError(err ? err.replace(/^error: /, '') : `the coordinator exited (code ${code}) before listening: ${out.stderr.trim().slice(-300)}`));
    });
  });
}
