/**
 * `npx tsx bench/scale-out.ts [--checkpoint DIR] [--samples N] [--shard-size K] [--workers 1,2]`:
 * he-validate --queue on this machine with 1, then 2 `hepoly worker` processes (the built CLI,
 * `npm run build` first) on a redis-server started for the bench; prints, per worker count,
 * the evaluation wall time, speedup and efficiency against one worker, and the queue overhead
 * per job (a free worker's wait before a job starts, result to collection) against the job's
 * evaluation time. Without --checkpoint, a quickstart MLP is trained for 1 epoch (the figures
 * are the queue's, not the accuracy's). The last stdout line is one JSON object.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
  const rows: { workers: number; evaluateS: number; speedup: number; efficiency: number; jobMs: number; evalMs: number; setupMs: number; startGapMs: number; collectMs: number; overheadPct: number; agreement: number }[] = [];
  try {
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
          speedup: base / evaluateS,
          efficiency: base / evaluateS / (w / (rows[0]?.workers ?? w)),
          jobMs: q.jobMs,
          evalMs: q.evalMs,
          setupMs: q.setupMsPerWorker,
          startGapMs: q.startGapMs,
          collectMs: q.collectMs,
          overheadPct: 100 * q.overheadFraction,
          agreement: r.agreement,
        });
      } finally {
        for (const p of procs) p.kill('SIGTERM');
      }
    }
  } finally {
    await redis.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
  console.log(`he-validate --queue, ${samples} samples, ${shardSize} per job (${Math.ceil(samples / shardSize)} jobs), checkpoint ${ckpt}`);
  console.log('| workers | evaluate (s) | speedup | efficiency | job on worker (ms) | evaluating (ms) | set-up once per worker (ms) | start gap (ms) | collect (ms) | queue overhead | agreement |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.workers} | ${r.evaluateS.toFixed(2)} | ${r.speedup.toFixed(2)}x | ${(100 * r.efficiency).toFixed(0)}% | ${r.jobMs.toFixed(0)} | ${r.evalMs.toFixed(0)} | ${r.setupMs.toFixed(0)} | ${r.startGapMs.toFixed(1)} | ${r.collectMs.toFixed(1)} | ${r.overheadPct.toFixed(2)}% | ${(100 * r.agreement).toFixed(1)}% |`);
  }
  console.log(JSON.stringify({ samples, shardSize, rows }));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
