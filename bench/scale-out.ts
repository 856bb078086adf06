/**
 * `npx tsx bench/scale-out.ts [--checkpoint DIR] [--samples N] [--shard-size K] [--workers 1,2] [--local]`:
 * he-validate --queue on this machine with 1, then 2 `hepoly worker` processes (the built CLI,
 * `npm run build` first) on a redis-server started for the bench; prints, per worker count,
 * the evaluation wall time, speedup and efficiency against one worker, and the queue overhead
 * per job (a free worker's wait before a job starts, result to collection) against the job's
 * evaluation time. With --local, the same samples first run without the queue (one process,
 * as many evaluator threads as the largest worker count): the anchor for wall time,
 * agreement and errors. Without --checkpoint, a quickstart MLP is trained for 1 epoch (the
 * figures are the queue's, not the accuracy's). The last stdout line is one JSON object.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { validate } from '../src/he/validate.js';
import { startRedis } from '../test/helpers/redis.js';

const bin = fileURLToPath(new URL('../bin/hepoly.js', import.meta.url));

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

function startWorker(url: string): Promise<ChildProcess> {
  const c = spawn(process.execPath, [bin, 'worker', '--queue', url], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    c.stdout!.on('data', (d: Buffer) => d.toString().includes('waiting for shard jobs') && resolve(c));
    c.once('exit', (code) => reject(new Error(`hepoly worker exited (${code})`)));
  });
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'hepoly-scale-'));
  let ckpt = flag('checkpoint', '');
  if (!ckpt) {
    ckpt = join(tmp, 'ckpt');
    const t = spawnSync(process.execPath, [bin, 'train', 'recipes/quickstart.yaml', '--set', 'train.epochs=1', '--out', ckpt], { encoding: 'utf8' });
    if (t.status !== 0) throw new Error(t.stderr);
  }
  const samples = Number(flag('samples', '16'));
  const shardSize = Number(flag('shard-size', '2'));
  const counts = flag('workers', '1,2').split(',').map(Number);
  const redis = await startRedis();
  const rows: { workers: number; evaluateS: number; totalS: number; speedup: number; efficiency: number; jobMs: number; evalMs: number; setupMs: number; startGapMs: number; collectMs: number; overheadPct: number; agreement: number; maxAbsError: number; heAccuracy: number }[] = [];
  let local: { threads: number; evaluateS: number; totalS: number; agreement: number; disagreements: number; maxAbsError: number; meanAbsError: number; plainAccuracy: number; heAccuracy: number } | null = null;
  try {
    if (process.argv.includes('--local')) {
      const threads = Math.max(...counts);
      const r = await validate({ checkpoint: ckpt, samples, packing: 'sample', workers: threads });
      local = { threads, evaluateS: r.timings.evaluateMs / 1000, totalS: r.timings.totalMs / 1000, agreement: r.agreement, disagreements: r.disagreements, maxAbsError: r.maxAbsError, meanAbsError: r.meanAbsError, plainAccuracy: r.plaintextAccuracy, heAccuracy: r.encryptedAccuracy };
      console.log(`without the queue (${threads} evaluator threads): evaluate ${local.evaluateS.toFixed(1)} s, whole run ${local.totalS.toFixed(1)} s, agreement ${local.agreement}, max abs error ${local.maxAbsError.toExponential(2)}`);
    }
    for (const w of counts) {
      const procs = await Promise.all(Array.from({ length: w }, () => startWorker(redis.url)));
      try {
        const r = await validate({ checkpoint: ckpt, samples, packing: 'sample', queue: { url: redis.url, shardSize } });
        const q = r.queue!;
        const evaluateS = r.timings.evaluateMs / 1000;
        const base = rows[0]?.evaluateS ?? evaluateS;
        rows.push({
          workers: w,
          evaluateS,
          totalS: r.timings.totalMs / 1000,
          speedup: base / evaluateS,
          efficiency: base / evaluateS / (w / (rows[0]?.workers ?? w)),
          jobMs: q.jobMs,
          evalMs: q.evalMs,
          setupMs: q.setupMsPerWorker,
          startGapMs: q.startGapMs,
          collectMs: q.collectMs,
          overheadPct: 100 * q.overheadFraction,
          agreement: r.agreement,
          maxAbsError: r.maxAbsError,
          heAccuracy: r.encryptedAccuracy,
        });
        console.log(`queue, ${w} worker(s): evaluate ${evaluateS.toFixed(1)} s, whole run ${(r.timings.totalMs / 1000).toFixed(1)} s, agreement ${r.agreement}, max abs error ${r.maxAbsError.toExponential(2)}`);
      } finally {
        for (const p of procs) p.kill('SIGTERM');
      }
    }
  } finally {
    await redis.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
  console.log(`he-validate --queue, ${samples} samples, ${shardSize} per job (${Math.ceil(samples / shardSize)} jobs), checkpoint ${ckpt}`);
  console.log(`load average at the end: ${loadavg().map((l) => l.toFixed(2)).join(', ')} (${cpus().length} cores)`);
  console.log('| run | evaluate (s) | whole run (s) | speedup | efficiency | job on worker (ms) | evaluating (ms) | set-up once per worker (ms) | start gap (ms) | collect (ms) | queue overhead | agreement | HE accuracy | max abs error |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  if (local) {
    console.log(`| no queue, ${local.threads} threads | ${local.evaluateS.toFixed(2)} | ${local.totalS.toFixed(2)} | | | | | | | | | ${(100 * local.agreement).toFixed(2)}% | ${(100 * local.heAccuracy).toFixed(2)}% | ${local.maxAbsError.toExponential(2)} |`);
  }
  for (const r of rows) {
    console.log(
      `| queue, ${r.workers} worker${r.workers === 1 ? '' : 's'} | ${r.evaluateS.toFixed(2)} | ${r.totalS.toFixed(2)} | ${r.speedup.toFixed(2)}x | ${(100 * r.efficiency).toFixed(0)}% | ${r.jobMs.toFixed(0)} | ${r.evalMs.toFixed(0)} | ${r.setupMs.toFixed(0)} | ${r.startGapMs.toFixed(1)} | ${r.collectMs.toFixed(1)} | ${r.overheadPct.toFixed(2)}% | ${(100 * r.agreement).toFixed(2)}% | ${(100 * r.heAccuracy).toFixed(2)}% | ${r.maxAbsError.toExponential(2)} |`,
    );
  }
  console.log(JSON.stringify({ samples, shardSize, local, rows }));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
