/**
 * `npx tsx bench/serve.ts`: encrypted inference over HTTP, per model: evaluation-key size and
 * upload time, request and response size, p50/p95 latency of one client's requests, throughput
 * with 1, 4 and 16 concurrent clients (distinct keys, so workers are re-keyed between them)
 * and the server's resident memory, with published figures of other toolkits beside them.
 *
 *   npx tsx bench/serve.ts [--models quickstart,fmnist-mlp,he-bench-mnist,fmnist-cnn] [--requests N] [--clients 1,4,16] [--workers W] [--json FILE]
 *
 * The server is `hepoly serve` of the built CLI (dist/: `npm run build` first) in its own
 * process, on this machine's cores. A checkpoint in checkpoints/<model> is used when present; otherwise a tiny version is
 * trained for the bench (1 epoch, 2000 training images), so the figures are the serving path's
 * (the network shape), not the accuracy's. The last stdout line is one JSON object.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { main } from '../src/cli/main.js';
import { exportHeArtifacts } from '../src/deploy/export.js';
import { loadClientArtifact } from '../src/deploy/artifact-load.js';
import { readInputFile } from '../src/deploy/input-file.js';
import { HEClient, RemoteModel, argmax, preprocessSample, type ClientArtifact } from '../src/deploy/client/index.js';
import { encodeFrames, jsonPart } from '../src/deploy/framing.js';
import { median } from '../src/util/stats.js';
import { validate } from '../src/he/validate.js';

const ANCHORS = [
  "Concrete-ML (published endpoint figures, MNIST-sized models): 72 MB evaluation key, ~4 s per inference on 8 vCPU",
  'TenSEAL: 95 MB context with Galois keys at N=4096',
];

interface Row {
  model: string;
  checkpoint: string;
  poly_modulus_degree: number;
  rotation_steps: number;
  key_bytes: number;
  keygen_ms: number;
  key_upload_ms: number;
  request_bytes: number;
  response_bytes: number;
  cold_request_ms: number;
  p50_ms: number;
  p95_ms: number;
  server_eval_ms_p50: number;
  throughput: Record<string, number>;
  server_rss_mb: number;
  server_peak_rss_mb: number;
  /** the same model in one process (he-validate, sample packing, same parameters), measured in this run */
  in_process: { latency_ms_per_sample: number; worker_ms_per_sample: number; samples: number; agreement: number };
  faults: FaultResult | null;
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
}

async function checkpointFor(model: string, work: string): Promise<string> {
  const have = join('checkpoints', model);
  if (existsSync(join(have, 'model.json'))) return have;
  const out = join(work, `ck-${model}`);
  const recipe = parseYaml(readFileSync(`recipes/${model}.yaml`, 'utf8')) as { extends?: string; data?: { source?: string } };
  const idx = recipe.extends === 'fmnist-base.yaml' || recipe.data?.source === 'idx';
  const set = ['--set', 'train.epochs=1', ...(idx ? ['--set', 'data.limit=2000', '--set', 'data.test_limit=200'] : [])];
  console.log(`${model}: no checkpoints/${model}; training a tiny one (1 epoch${idx ? ', 2000 images' : ''}) for the bench`);
  const code = await main(['train', `recipes/${model}.yaml`, ...set, '--out', out]);
  if (code !== 0) throw new Error(`training ${model} failed (exit ${code})`);
  return out;
}

function rawInputs(model: string, artifact: ClientArtifact, work: string, count: number): Float64Array[] {
  if (artifact.preprocess.source === 'idx') return readInputFile('datasets/fashion-mnist/t10k-images-idx3-ubyte.gz', artifact).slice(0, count);
  const lines = readFileSync('datasets/breast-cancer-wisconsin.csv', 'utf8').trim().split('\n');
  const file = join(work, `${model}-input.csv`);
  writeFileSync(file, [lines[0], ...lines.slice(1, 1 + count)].join('\n'));
  return readInputFile(file, artifact);
}

/** `hepoly serve` (the built CLI, as an operator runs it) in its own process: its memory is its own. */
function startServer(o: { artifactDir: string; port: number; workers: number; keysDir: string; maxRequestMb: number }): Promise<{ url: string; child: ChildProcess }> {
  const args = ['bin/hepoly.js', 'serve', o.artifactDir, '--port', String(o.port), '--workers', String(o.workers), '--keys', o.keysDir, '--max-request-mb', String(o.maxRequestMb)];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /serving .* on (http:\/\/\S+)/.exec(out);
      if (m) resolve({ url: m[1], child });
    });
    child.on('exit', (c) => reject(new Error(`hepoly serve exited (${c}): ${out}`)));
  });
}

function rssMb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

interface FaultResult {
  clients: number;
  answered: number;
  /** requests that met the outage (connection refused or 5xx) and were sent again */
  retried: number;
  /** answers whose label differs from the same input's answer before the kill */
  wrong: number;
  keys_lost: number;
  outage_ms: number;
  bad_requests: number;
  bad_requests_4xx: number;
}

/**
 * kill -9 of the server under load from 4 clients (stored key ids), restart on the same port
 * and keys folder; the clients retry what failed. Counts wrong answers (labels that differ from
 * the same input's label before the kill), key ids the restarted server no longer knows, and
 * bad requests sent under load that did not get a 4xx.
 */
async function faultPhase(o: {
  serverOptions: Parameters<typeof startServer>[0];
  url: string;
  child: ChildProcess;
  clients: HEClient[];
  keyIds: string[];
  artifact: ClientArtifact;
  x: Float64Array[];
}): Promise<{ result: FaultResult; server: { url: string; child: ChildProcess } }> {
  const port = Number(new URL(o.url).port);
  let url = o.url;
  let child = o.child;
  const inputs = o.x.slice(0, 4);
  const ask = async (c: number, i: number) => {
    const remote = new RemoteModel(o.artifact, { url });
    const { outputs } = await remote.evaluate(o.keyIds[c], [o.clients[c].encrypt(inputs[i])]);
    return argmax(o.clients[c].decrypt(outputs[0]));
  };
  const reference = [];
  for (let i = 0; i < inputs.length; i++) reference.push(await ask(0, i));
  const r: FaultResult = { clients: o.clients.length, answered: 0, retried: 0, wrong: 0, keys_lost: 0, outage_ms: 0, bad_requests: 0, bad_requests_4xx: 0 };
  let restarted = false;
  const perClientAfter = 2;
  const loops = o.clients.map(async (_, c) => {
    let after = 0;
    for (let i = c; after < perClientAfter; i++) {
      try {
        const label = await ask(c, i % inputs.length);
        r.answered++;
        if (label !== reference[i % inputs.length]) r.wrong++;
        if (restarted) after++;
      } catch {
        r.retried++;
        await new Promise((res) => setTimeout(res, 250));
      }
    }
  });
  await new Promise((res) => setTimeout(res, 3000));
  const t = performance.now();
  child.kill('SIGKILL');
  await new Promise((res) => child.once('exit', res));
  ({ url, child } = await startServer({ ...o.serverOptions, port }));
  r.outage_ms = performance.now() - t;
  restarted = true;
  // bad requests while the clients load it
  const bad: [string, RequestInit][] = [
    ['/v1/predict', { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: encodeFrames([jsonPart({ key_id: 'ab'.repeat(32), server_digest: o.artifact.server_digest, artifact_format: 1, samples: 1 }), new Uint8Array(100)]) }],
    ['/v1/predict', { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: encodeFrames([jsonPart({ key_id: o.keyIds[0], server_digest: o.artifact.server_digest, artifact_format: 1, samples: 1 }), new Uint8Array(5000).fill(1)]) }],
    ['/v1/predict', { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: new Uint8Array(33 * 2 ** 20) }],
    ['/v1/keys', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }],
    ['/v1/keys/..%2F..%2Fetc%2Fpasswd', { method: 'DELETE' }],
  ];
  for (const [path, init] of bad) {
    r.bad_requests++;
    try {
      const res = await fetch(`${url}${path}`, init);
      await res.arrayBuffer();
      if (res.status >= 400 && res.status < 500) r.bad_requests_4xx++;
    } catch {
      // a reset counts as not answered
    }
  }
  await Promise.all(loops);
  for (let c = 0; c < o.clients.length; c++) if (!(await new RemoteModel(o.artifact, { url }).hasKeys(o.keyIds[c]))) r.keys_lost++;
  console.log(`  kill -9 under load: outage ${(r.outage_ms / 1000).toFixed(1)} s, ${r.answered} answered, ${r.retried} retried, ${r.wrong} wrong, ${r.keys_lost} keys lost, ${r.bad_requests_4xx}/${r.bad_requests} bad requests answered 4xx`);
  return { result: r, server: { url, child } };
}

async function benchModel(model: string, work: string, requests: number, clientCounts: number[], workers: number, withFaults: boolean): Promise<Row> {
  const checkpoint = await checkpointFor(model, work);
  const exp = await exportHeArtifacts({ checkpoint, out: join(work, model), overwrite: true, log: (l) => console.log(`  ${l}`) });
  const artifact = loadClientArtifact(exp.clientDir);
  // the anchor: the in-process path (client and server as worker threads, no HTTP), same parameters
  const paramsFile = join(work, `${model}-params.json`);
  writeFileSync(paramsFile, JSON.stringify({ poly_modulus_degree: exp.params.polyModulusDegree, coeff_modulus_bits: exp.params.coeffModulusBits, scale_bits: exp.params.scaleBits }));
  const local = await validate({ checkpoint, samples: Math.max(2, Math.min(requests, 4)), packing: 'sample', params: paramsFile, workers, log: () => {} });
  const inProcess = {
    latency_ms_per_sample: local.latencyMsPerSample,
    worker_ms_per_sample: local.timings.evaluateMs / local.samples,
    samples: local.samples,
    agreement: local.agreement,
  };
  console.log(`  in-process he-validate (same parameters, ${local.samples} samples): ${inProcess.latency_ms_per_sample.toFixed(0)} ms per sample latency, agreement ${inProcess.agreement}`);
  const serverOptions = { artifactDir: exp.serverDir, port: 0, workers, keysDir: join(work, `${model}-keys`), maxRequestMb: 32 };
  let { url, child } = await startServer(serverOptions);
  try {
    const maxClients = Math.max(...clientCounts);
    const clients: HEClient[] = [];
    const keygen: number[] = [];
    const upload: number[] = [];
    const remotes: RemoteModel[] = [];
    const keyIds: string[] = [];
    for (let c = 0; c < maxClients; c++) {
      let t = performance.now();
      clients.push(await HEClient.create(artifact));
      keygen.push(performance.now() - t);
      const remote = new RemoteModel(artifact, { url });
      t = performance.now();
      keyIds.push(await remote.uploadKeys(clients[c]));
      upload.push(performance.now() - t);
      remotes.push(remote);
    }
    console.log(`  ${maxClients} clients: keygen ${(median(keygen) / 1000).toFixed(2)} s, upload ${(median(upload) / 1000).toFixed(2)} s (medians), ${(clients[0].evaluationKeys.length / 2 ** 20).toFixed(1)} MB of evaluation keys each`);
    const x = rawInputs(model, artifact, work, Math.max(requests, 4)).map((r) => preprocessSample(artifact, r));
    const one = async (c: number, i: number) => {
      const t = performance.now();
      const { outputs, serverMs } = await remotes[c].evaluate(keyIds[c], [clients[c].encrypt(x[i % x.length])]);
      clients[c].decrypt(outputs[0]);
      return { ms: performance.now() - t, server: serverMs[0] };
    };
    const request = encodeFrames([jsonPart({ key_id: keyIds[0], server_digest: artifact.server_digest, artifact_format: 1, samples: 1 }), ...clients[0].encrypt(x[0])]);
    const before = remotes[0].bytesReceived;
    const cold = await one(0, 0);
    const responseBytes = remotes[0].bytesReceived - before;
    const lat: number[] = [];
    const srv: number[] = [];
    for (let i = 0; i < requests; i++) {
      const r = await one(0, i);
      lat.push(r.ms);
      srv.push(r.server);
    }
    const throughput: Record<string, number> = {};
    for (const n of clientCounts) {
      const per = Math.max(2, Math.ceil(requests / n));
      const t = performance.now();
      await Promise.all(Array.from({ length: n }, async (_, c) => {
        for (let i = 0; i < per; i++) await one(c, i);
      }));
      throughput[String(n)] = (n * per) / ((performance.now() - t) / 1000);
      console.log(`  ${n} concurrent clients x ${per} requests: ${throughput[String(n)].toFixed(2)} requests/s`);
    }
    const serverRss = rssMb(child.pid!, 'VmRSS');
    const serverPeakRss = rssMb(child.pid!, 'VmHWM');
    let faults: FaultResult | null = null;
    if (withFaults) {
      const f = await faultPhase({ serverOptions, url, child, clients: clients.slice(0, 4), keyIds: keyIds.slice(0, 4), artifact, x });
      ({ url, child } = f.server);
      faults = f.result;
    }
    for (const c of clients) c.delete();
    return {
      faults,
      model,
      checkpoint,
      poly_modulus_degree: artifact.params.polyModulusDegree,
      rotation_steps: artifact.rotation_steps.length,
      key_bytes: clients[0].evaluationKeys.length,
      keygen_ms: median(keygen),
      key_upload_ms: median(upload),
      request_bytes: request.length,
      response_bytes: responseBytes,
      cold_request_ms: cold.ms,
      p50_ms: percentile(lat, 50),
      p95_ms: percentile(lat, 95),
      server_eval_ms_p50: percentile(srv, 50),
      throughput,
      server_rss_mb: serverRss,
      server_peak_rss_mb: serverPeakRss,
      in_process: inProcess,
    };
  } finally {
    child.kill('SIGTERM');
  }
}

const models = arg('models', 'quickstart,fmnist-mlp,he-bench-mnist,fmnist-cnn').split(',');
const requests = Number(arg('requests', '10'));
const clientCounts = arg('clients', '1,4,16').split(',').map(Number);
const workers = Number(arg('workers', String(availableParallelism())));
// the kill -9 phase runs for these models (default: the first)
const faultsFor = arg('faults', models[0]).split(',');
const work = mkdtempSync(join(tmpdir(), 'hepoly-bench-serve-'));
const rows: Row[] = [];
const failures: Record<string, string> = {};
try {
  for (const m of models) {
    console.log(`${m}:`);
    try {
      rows.push(await benchModel(m, work, requests, clientCounts, workers, faultsFor.includes(m)));
    } catch (e) {
      failures[m] = (e as Error).message;
      console.log(`  ${m}: not measured: ${(e as Error).message}`);
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
const mb = (b: number) => (b / 2 ** 20).toFixed(1);
console.log(`\n${workers} server workers, ${availableParallelism()} cores; one request = one sample (sample packing)`);
console.log('| model | N | rot. keys | key MB | keygen s | upload s | request KB | response KB | cold ms | p50 ms | p95 ms | in-process ms | HTTP / in-process | ' + clientCounts.map((c) => `${c} cl. req/s`).join(' | ') + ' | server RSS MB (peak) |');
console.log(`|${'---|'.repeat(13 + clientCounts.length + 1)}`);
for (const r of rows) {
  console.log(
    `| ${r.model} | ${r.poly_modulus_degree} | ${r.rotation_steps} | ${mb(r.key_bytes)} | ${(r.keygen_ms / 1000).toFixed(2)} | ${(r.key_upload_ms / 1000).toFixed(2)} | ${(r.request_bytes / 1024).toFixed(0)} | ${(r.response_bytes / 1024).toFixed(0)} | ${r.cold_request_ms.toFixed(0)} | ${r.p50_ms.toFixed(0)} | ${r.p95_ms.toFixed(0)} | ${r.in_process.latency_ms_per_sample.toFixed(0)} | ${(r.p50_ms / r.in_process.latency_ms_per_sample).toFixed(2)} | ` +
      clientCounts.map((c) => r.throughput[String(c)].toFixed(2)).join(' | ') +
      ` | ${r.server_rss_mb.toFixed(0)} (${r.server_peak_rss_mb.toFixed(0)}) |`,
  );
}
console.log('anchors (published, other hardware):');
for (const a of ANCHORS) console.log(`  ${a}`);
console.log(JSON.stringify({ workers, rows, failures, anchors: ANCHORS }));
