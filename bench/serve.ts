/**
 * `npx tsx bench/serve.ts`: encrypted inference over HTTP, per model: evaluation-key size and
 * upload time, request and response size, p50/p95 latency of one client's requests, throughput
 * with 1, 4 and 16 concurrent clients (distinct keys, so workers are re-keyed between them)
 * and the server's resident memory, with published figures of other toolkits beside them.
 *
 *   npx tsx bench/serve.ts [--models quickstart,fmnist-mlp,he-bench-mnist,fmnist-cnn] [--requests N] [--clients 1,4,16] [--workers W]
 *                          [--faults MODEL,...|none] [--fault-clients N]
 *
 * The fault phase (the first model unless --faults says otherwise) kills the server with
 * SIGKILL under load from --fault-clients clients (default 4) and restarts it on the same port
 * and keys folder; the clients' own RemoteModel retries carry them over it (faultPhase).
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
  /** requests answered before the kill */
  before: number;
  /** requests in flight at the kill, answered after the restart by the client's own retries */
  across: number;
  /** requests sent after the kill (during the outage or after the restart) and answered */
  after: number;
  /** requests that ended in an error despite the retries */
  failed: number;
  /** answers whose label differs from the same input's answer before the kill, or whose logits are off by more than LOGIT_TOLERANCE */
  wrong: number;
  /** key ids the restarted server did not know: keys the clients had to upload again, or did not find at the end */
  keys_lost: number;
  /** requests the clients sent again (connection refused or reset, 502/503) */
  retries: number;
  /** the kill until the restarted server listens */
  outage_ms: number;
  /** the kill until the first answer after the restart */
  recovery_ms: number;
  bad_requests: number;
  bad_requests_4xx: number;
}

/** relative to the largest reference logit (at least 1): CKKS noise of two encryptions is orders of magnitude below */
const LOGIT_TOLERANCE = 1e-2;
/** a client waits out a restart on its own: 20 tries, 250 ms doubling to 5 s (about 80 s) */
const FAULT_RETRY = { tries: 20, baseMs: 250, maxMs: 5000 };

/** Bad requests sent under load right after the restart: each must get a 4xx while the clients go on. */
function badRequests(artifact: ClientArtifact, keyId: string): [string, RequestInit][] {
  const octets = { 'content-type': 'application/octet-stream' };
  const meta = (key: string) => jsonPart({ key_id: key, server_digest: artifact.server_digest, artifact_format: 1, samples: 1 });
  return [
    ['/v1/predict', { method: 'POST', headers: octets, body: encodeFrames([meta('ab'.repeat(32)), new Uint8Array(100)]) as BodyInit }],
    ['/v1/predict', { method: 'POST', headers: octets, body: encodeFrames([meta(keyId), new Uint8Array(5000).fill(1)]) as BodyInit }],
    ['/v1/predict', { method: 'POST', headers: octets, body: new Uint8Array(33 * 2 ** 20) }],
    ['/v1/keys', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }],
    ['/v1/keys/..%2F..%2Fetc%2Fpasswd', { method: 'DELETE' }],
  ];
}

async function countBad(url: string, bad: [string, RequestInit][]): Promise<number> {
  let answered4xx = 0;
  for (const [path, init] of bad) {
    try {
      const res = await fetch(`${url}${path}`, init);
      await res.arrayBuffer();
      if (res.status >= 400 && res.status < 500) answered4xx++;
    } catch {
      // a reset counts as not answered
    }
  }
  return answered4xx;
}

/**
 * kill -9 of the server under load from N clients (stored key ids, each its own RemoteModel),
 * restart on the same port and keys folder after the kill; nothing in the bench retries: the
 * clients' RemoteModel sends again what the kill cut off (FAULT_RETRY). The kill comes once N
 * requests have been answered; each client then goes on until it has 2 answers to requests
 * sent after the kill. Counts requests before / across / after the kill, wrong answers (the
 * same input's label or logits before the kill), keys lost, and the time to the first answer.
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
  let child = o.child;
  const inputs = o.x.slice(0, 4);
  const n = o.clients.length;
  const remotes = o.clients.map(() => new RemoteModel(o.artifact, { url: o.url, retry: FAULT_RETRY }));
  const ask = async (c: number, i: number) => {
    const { outputs } = await remotes[c].evaluate(o.keyIds[c], [o.clients[c].encrypt(inputs[i])], o.clients[c]);
    return o.clients[c].decrypt(outputs[0]);
  };
  const reference: Float64Array[] = [];
  for (let i = 0; i < inputs.length; i++) reference.push(await ask(0, i));
  const uploadsBefore = remotes.map((r) => r.keyUploads);
  const r: FaultResult = { clients: n, before: 0, across: 0, after: 0, failed: 0, wrong: 0, keys_lost: 0, retries: 0, outage_ms: 0, recovery_ms: 0, bad_requests: 0, bad_requests_4xx: 0 };
  let killedAt = Infinity;
  let firstAfter = Infinity;
  const loops = o.clients.map(async (_, c) => {
    let sentAfter = 0;
    for (let k = c; sentAfter < 2; k++) {
      const i = k % inputs.length;
      const t = performance.now();
      if (t >= killedAt) sentAfter++;
      try {
        const logits = await ask(c, i);
        const end = performance.now();
        if (end >= killedAt) firstAfter = Math.min(firstAfter, end);
        if (end < killedAt) r.before++;
        else if (t < killedAt) r.across++;
        else r.after++;
        if (wrongAnswer(logits, reference[i])) r.wrong++;
      } catch (e) {
        r.failed++;
        console.log(`  client ${c}: request failed: ${(e as Error).message}`);
      }
    }
  });
  while (r.before < n && r.failed < n) await new Promise((res) => setTimeout(res, 100));
  killedAt = performance.now();
  child.kill('SIGKILL');
  await new Promise((res) => child.once('exit', res));
  let url: string;
  ({ url, child } = await startServer({ ...o.serverOptions, port }));
  r.outage_ms = performance.now() - killedAt;
  const bad = badRequests(o.artifact, o.keyIds[0]);
  r.bad_requests = bad.length;
  r.bad_requests_4xx = await countBad(url, bad);
  await Promise.all(loops);
  r.recovery_ms = firstAfter - killedAt;
  r.retries = remotes.reduce((a, m) => a + m.retries, 0);
  for (let c = 0; c < n; c++) {
    const reuploaded = remotes[c].keyUploads > uploadsBefore[c];
    if (reuploaded || !(await remotes[c].hasKeys(o.keyIds[c]))) r.keys_lost++;
  }
  console.log(
    `  kill -9 under load from ${n} clients: requests answered ${r.before} before the kill, ${r.across} in flight across it, ${r.after} after; ${r.wrong} wrong, ${r.failed} failed, ${r.keys_lost} keys lost; ` +
      `outage ${(r.outage_ms / 1000).toFixed(1)} s, first answer ${(r.recovery_ms / 1000).toFixed(1)} s after the kill, ${r.retries} requests sent again by the clients; ${r.bad_requests_4xx}/${r.bad_requests} bad requests answered 4xx`,
  );
  return { result: r, server: { url, child } };
}

function wrongAnswer(logits: Float64Array, reference: Float64Array): boolean {
  const scale = Math.max(1, ...Array.from(reference, Math.abs));
  return argmax(logits) !== argmax(reference) || logits.some((v, k) => Math.abs(v - reference[k]) > LOGIT_TOLERANCE * scale);
}

async function benchModel(model: string, work: string, requests: number, clientCounts: number[], workers: number, faultClients: number): Promise<Row> {
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
    const maxClients = Math.max(...clientCounts, faultClients);
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
    if (faultClients > 0) {
      const f = await faultPhase({ serverOptions, url, child, clients: clients.slice(0, faultClients), keyIds: keyIds.slice(0, faultClients), artifact, x });
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
// the kill -9 phase runs for these models (default: the first; none: no fault phase), under load from --fault-clients clients
const faultsFor = arg('faults', models[0]).split(',');
const faultClients = Number(arg('fault-clients', '4'));
if (!Number.isInteger(faultClients) || faultClients < 1) throw new Error(`--fault-clients ${arg('fault-clients', '4')}: expected a whole number of clients, 1 or more`);
const work = mkdtempSync(join(tmpdir(), 'hepoly-bench-serve-'));
const rows: Row[] = [];
const failures: Record<string, string> = {};
try {
  for (const m of models) {
    console.log(`${m}:`);
    try {
      rows.push(await benchModel(m, work, requests, clientCounts, workers, faultsFor.includes(m) ? faultClients : 0));
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
const faulted = rows.filter((r) => r.faults);
if (faulted.length) {
  console.log('\nkill -9 under load, restart on the same port and keys folder (the clients retry on their own):');
  console.log('| model | clients | answered before / across / after the kill | wrong | failed | keys lost | outage s | first answer after the kill s | re-sent requests | bad requests 4xx |');
  console.log(`|${'---|'.repeat(10)}`);
  for (const { model, faults: f } of faulted) {
    console.log(`| ${model} | ${f!.clients} | ${f!.before} / ${f!.across} / ${f!.after} | ${f!.wrong} | ${f!.failed} | ${f!.keys_lost} | ${(f!.outage_ms / 1000).toFixed(1)} | ${(f!.recovery_ms / 1000).toFixed(1)} | ${f!.retries} | ${f!.bad_requests_4xx}/${f!.bad_requests} |`);
  }
}
console.log('anchors (published, other hardware):');
for (const a of ANCHORS) console.log(`  ${a}`);
console.log(JSON.stringify({ workers, rows, failures, anchors: ANCHORS }));
