/**
 * `npm run bench:he-throughput`: the classic encrypted-inference benchmark network
 * (he-bench-mnist: conv 7x7x4 s3 - square - dense 64 - square - dense 10) in batch packing
 * (CryptoNets: slot s of every ciphertext is image s) over the full slot count of each ring,
 * real SEAL, one server worker thread. Prints amortized ms per image and images/s per core
 * beside the published CryptoNets and nGraph-HE2 figures (printed as published, not rerun
 * here), with the ratio, and the agreement of the decrypted predictions with plaintext.
 *
 *   npm run bench:he-throughput -- [--rings 8192,16384] [--checkpoint DIR] [--json FILE]
 *
 * Ring 8192 gives 4,096 images per pass and ring 16384 gives 8,192 (the CryptoNets batch); both
 * use the chain `--params auto` picks for this depth-5 network ([38, 28 x5, 38], scale 2^28), so
 * the two rows differ only in N. The last line of stdout is one JSON object with every row.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { validate, type ValidationReport } from '../src/he/validate.js';

/** Published figures (MNIST, other hardware and libraries): reference only, not rerun here. */
const ANCHORS = [
  {
    system: 'CryptoNets network on SEAL 3.2 (figure as given in issue 23)',
    batch: 8192 as number | null,
    msPerImage: 28_000 / 8192,
    cores: null as number | null,
    note: '~28 s per batch of 8,192; core count not stated, per-core ratio taken as if one core',
  },
  {
    system: 'nGraph-HE2 (Boemer et al. 2019), CryptoNets network',
    batch: null as number | null,
    msPerImage: 1000 / 1998,
    cores: null as number | null,
    note: '1,998 images/s on a server CPU; core count not checked here, per-core ratio taken as if one core',
  },
];

/** The chain --params auto picks for he-bench-mnist (depth 5) at N=8192, reused at N=16384. */
const CHAIN = { coeff_modulus_bits: [38, 28, 28, 28, 28, 28, 38], scale_bits: 28 };

function args() {
  const a = process.argv.slice(2);
  const val = (k: string) => {
    const i = a.indexOf(k);
    return i >= 0 ? a[i + 1] : undefined;
  };
  const rings = (val('--rings') ?? '8192,16384').split(',').map(Number);
  const bad = rings.find((n) => ![4096, 8192, 16384, 32768].includes(n));
  if (bad !== undefined) throw new Error(`--rings: ${bad} is not a ring degree; use e.g. --rings 8192,16384`);
  return { rings, checkpoint: val('--checkpoint') ?? join('checkpoints', 'he-bench-mnist'), json: val('--json') };
}

interface Row {
  poly_modulus_degree: number;
  images: number;
  agreement: number;
  disagreements: number;
  plaintext_accuracy: number;
  encrypted_accuracy: number;
  /** server evaluation of the whole batch (one worker thread) */
  evaluate_ms: number;
  encrypt_ms: number;
  /** server evaluation only, per image: the throughput figure */
  ms_per_image: number;
  images_per_s_per_core: number;
  /** client encryption + server evaluation, per image */
  ms_per_image_with_encrypt: number;
  pt_mults: number;
  ct_ct_mults: number;
  rescales: number;
  worker_heap_mb: number;
  peak_rss_mb: number;
}

function toRow(r: ValidationReport): Row {
  const msPerImage = r.timings.evaluateMs / r.samples;
  return {
    poly_modulus_degree: r.params.polyModulusDegree,
    images: r.samples,
    agreement: r.agreement,
    disagreements: r.disagreements,
    plaintext_accuracy: r.plaintextAccuracy,
    encrypted_accuracy: r.encryptedAccuracy,
    evaluate_ms: r.timings.evaluateMs,
    encrypt_ms: r.timings.encryptMs,
    ms_per_image: msPerImage,
    images_per_s_per_core: 1000 / msPerImage,
    ms_per_image_with_encrypt: (r.timings.evaluateMs + r.timings.encryptMs) / r.samples,
    pt_mults: r.ops.ptMults,
    ct_ct_mults: r.ops.ctCtMults,
    rescales: r.ops.rescales,
    worker_heap_mb: r.workerHeapMb,
    peak_rss_mb: r.peakRssMb,
  };
}

function table(rows: Row[]): string {
  const pct = (v: number) => `${(100 * v).toFixed(2)}%`;
  const lines = [
    '| N | images per pass | agreement (decrypted vs plaintext argmax) | plain / HE acc | evaluate (1 core) | ms / image | images/s per core | ms / image incl. encrypt | pt mults | ct-ct mults | rescales | SEAL heap | peak RSS |',
    `|${'---|'.repeat(13)}`,
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.poly_modulus_degree} | ${r.images} | ${pct(r.agreement)} (${r.disagreements} differ) | ${pct(r.plaintext_accuracy)} / ${pct(r.encrypted_accuracy)} | ${(r.evaluate_ms / 1000).toFixed(1)} s | ${r.ms_per_image.toFixed(2)} | ${r.images_per_s_per_core.toFixed(1)} | ${r.ms_per_image_with_encrypt.toFixed(2)} | ${r.pt_mults} | ${r.ct_ct_mults} | ${r.rescales} | ${(r.worker_heap_mb / 1024).toFixed(2)} GiB | ${(r.peak_rss_mb / 1024).toFixed(2)} GiB |`,
    );
  }
  return lines.join('\n');
}

/** Our best per-core row against each anchor: their ms per image (per core) over ours. */
function anchorTable(rows: Row[]): string {
  const best = rows.reduce((a, b) => (b.ms_per_image < a.ms_per_image ? b : a));
  const lines = ['| system | batch | ms / image (published) | images/s (published) | cores | ours: ms / image per core (N) | anchor / ours (per core; > 1: ours faster) | note |', '|---|---|---|---|---|---|---|---|'];
  for (const a of ANCHORS) {
    const perCore = a.msPerImage * (a.cores ?? 1);
    lines.push(
      `| ${a.system} | ${a.batch ?? 'not stated here'} | ${a.msPerImage.toFixed(2)} | ${(1000 / a.msPerImage).toFixed(0)} | ${a.cores ?? 'not stated'} | ${best.ms_per_image.toFixed(2)} (N=${best.poly_modulus_degree}) | ${(perCore / best.ms_per_image).toFixed(3)} | ${a.note} |`,
    );
  }
  return lines.join('\n');
}

async function runRing(checkpoint: string, N: number, tmp: string): Promise<Row> {
  const params = join(tmp, `params-${N}.json`);
  writeFileSync(params, JSON.stringify({ poly_modulus_degree: N, ...CHAIN }));
  const images = N / 2;
  process.stderr.write(`he-validate ${checkpoint} --packing batch --samples ${images} --params ${params} --workers 1 ...\n`);
  const r = await validate({ checkpoint, samples: images, packing: 'batch', params, workers: 1, log: (l) => process.stderr.write(`  ${l}\n`) });
  if (r.samplesPerPass !== images) throw new Error(`internal: a pass served ${r.samplesPerPass} images, expected the full ${images} slots`);
  return toRow(r);
}

async function main(): Promise<void> {
  const o = args();
  if (!existsSync(join(o.checkpoint, 'model.json'))) {
    throw new Error(`${o.checkpoint} is missing: train it with \`hepoly train recipes/he-bench-mnist.yaml\``);
  }
  const tmp = mkdtempSync(join(os.tmpdir(), 'he-throughput-'));
  const rows: Row[] = [];
  const failed: { poly_modulus_degree: number; error: string }[] = [];
  try {
    for (const N of o.rings) {
      try {
        rows.push(await runRing(o.checkpoint, N, tmp));
      } catch (e) {
        // a ring that does not fit (memory) is reported, the others still run
        failed.push({ poly_modulus_degree: N, error: (e as Error).message.split('\n')[0] });
        process.stderr.write(`  N=${N}: ${(e as Error).message}\n`);
      }
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  const load = os.loadavg()[0];
  const lines = [
    '## he-bench-mnist batch-packing throughput (node-seal 6.0.3, SEAL 4.1 CKKS, 128-bit security, one worker thread)',
    '',
    `${os.cpus().length} cores, ${os.cpus()[0]?.model ?? 'unknown CPU'}, load average ${load.toFixed(1)} at the end of the run. ms / image is the server's evaluation wall time of one full batch over its images.`,
    '',
    rows.length ? table(rows) : '(no ring ran)',
    '',
  ];
  if (rows.length) lines.push('Published anchors (figures as published, MNIST, other hardware; not rerun here):', '', anchorTable(rows), '');
  for (const f of failed) lines.push(`N=${f.poly_modulus_degree}: did not run: ${f.error}`);
  console.log(lines.join('\n'));
  const summary = { rows, anchors: ANCHORS, failed, cores: os.cpus().length, load_average: load };
  if (o.json) writeFileSync(o.json, JSON.stringify(summary, null, 2));
  console.log(JSON.stringify(summary));
  if (!rows.length) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
