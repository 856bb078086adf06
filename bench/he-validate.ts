/**
 * Encrypted-validation figures for the README: runs `he-validate` on the shipped recipes'
 * checkpoints and prints one markdown table (plus the published anchors to compare with).
 *
 *   npx tsx bench/he-validate.ts [--quick] [--only quickstart,fmnist-mlp,fmnist-cnn] [--note TEXT] [--out FILE.md] [--json FILE]
 *
 * --note keeps only the runs whose note contains TEXT (e.g. --note scale-bits).
 *
 * Checkpoints are read from checkpoints/<name>; a missing one is reported with the command
 * that creates it. --quick uses small sample counts (minutes instead of hours).
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { validate, reportJson, fmtMs, type ValidationReport } from '../src/he/validate.js';

interface Run {
  checkpoint: string;
  packing: 'batch' | 'sample';
  samples: number | 'all';
  quickSamples: number | 'all';
  note: string;
  /** --scale-bits: more precision for --params auto */
  scaleBits?: number;
}

const RUNS: Run[] = [
  { checkpoint: 'quickstart', packing: 'batch', samples: 'all', quickSamples: 'all', note: 'whole held-out split' },
  { checkpoint: 'quickstart', packing: 'sample', samples: 20, quickSamples: 5, note: 'latency' },
  { checkpoint: 'fmnist-mlp', packing: 'batch', samples: 'all', quickSamples: 512, note: 'whole test split' },
  // the default scale leaves one plaintext near-tie (top-2 gap 6.6e-5) to CKKS noise
  { checkpoint: 'fmnist-mlp', packing: 'batch', samples: 'all', quickSamples: 512, note: 'whole test split, --scale-bits 40', scaleBits: 40 },
  { checkpoint: 'fmnist-mlp', packing: 'sample', samples: 20, quickSamples: 4, note: 'latency' },
  { checkpoint: 'fmnist-cnn', packing: 'sample', samples: 200, quickSamples: 4, note: '>= 200 test samples' },
  { checkpoint: 'fmnist-cnn', packing: 'batch', samples: 4096, quickSamples: 16, note: 'one full batch (N/2 slots)' },
];

const ANCHORS = [
  '| CryptoNets (Gilad-Bachrach et al. 2016), MNIST, batch of 8192 | ~250 s per batch | ~30 ms amortized |',
  '| LoLa (Brutzkus et al. 2019), MNIST, one image | ~2.2 s latency | ~2.2 s |',
];

function args() {
  const a = process.argv.slice(2);
  const val = (k: string) => {
    const i = a.indexOf(k);
    return i >= 0 ? a[i + 1] : undefined;
  };
  return { quick: a.includes('--quick'), only: val('--only')?.split(','), note: val('--note'), out: val('--out'), json: val('--json') };
}

function pct(v: number): string {
  return `${(100 * v).toFixed(2)}%`;
}

function row(r: ValidationReport, name: string, note: string): string {
  return [
    name,
    r.packing,
    `${r.samples} (${note})`,
    pct(r.plaintextAccuracy),
    pct(r.encryptedAccuracy),
    pct(r.agreement),
    `${r.maxAbsError.toExponential(1)} (${r.relativeError.toExponential(1)})`,
    fmtMs(r.latencyMsPerSample),
    fmtMs(r.amortizedMsPerSample),
    `${r.params.polyModulusDegree} / [${r.params.coeffModulusBits.join(',')}]`,
    `${r.depth}/${r.params.levels}`,
    `${r.ciphertexts.perPass}`,
    `${r.ops.rotations}`,
    `${r.ops.ctCtMults}`,
    `${r.ops.ptMults}`,
    `${(r.peakRssMb / 1024).toFixed(2)} GiB (wasm ${(r.workerHeapMb / 1024).toFixed(2)})`,
  ].join(' | ');
}

async function main(): Promise<void> {
  const o = args();
  const header =
    '| checkpoint | packing | samples | plain acc | HE acc | agreement | max abs err (of range) | latency/sample | amortized/sample | N / coeff bits | levels | ct per pass | rotations | ct-ct mults | pt mults | peak RSS (SEAL heaps) |\n' +
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|';
  const rows: string[] = [];
  const missing: string[] = [];
  const results: Record<string, unknown>[] = [];
  for (const run of RUNS) {
    if (o.only && !o.only.includes(run.checkpoint)) continue;
    if (o.note && !run.note.includes(o.note)) continue;
    const dir = join('checkpoints', run.checkpoint);
    if (!existsSync(join(dir, 'model.json'))) {
      if (!missing.includes(run.checkpoint)) missing.push(run.checkpoint);
      continue;
    }
    const samples = o.quick ? run.quickSamples : run.samples;
    const scale = run.scaleBits ? ` --scale-bits ${run.scaleBits}` : '';
    process.stderr.write(`he-validate ${dir} --packing ${run.packing} --samples ${samples}${scale} ...\n`);
    const t = performance.now();
    const r = await validate({ checkpoint: dir, samples, packing: run.packing, scaleBits: run.scaleBits, log: (l) => process.stderr.write(`  ${l}\n`) });
    process.stderr.write(`  done in ${fmtMs(performance.now() - t)}\n`);
    rows.push(`| ${row(r, run.checkpoint, run.note)} |`);
    results.push({ name: run.checkpoint, note: run.note, ...reportJson(r) });
    // print as we go: the CNN runs are long
    process.stderr.write(`${rows[rows.length - 1]}\n`);
  }
  const lines = ['## Encrypted validation (node-seal 6.0.3, SEAL 4.1 CKKS, 128-bit security)', '', header, ...rows, ''];
  lines.push('Published anchors (native SEAL on server CPUs, smaller MNIST networks):', '', '| system | latency | amortized |', '|---|---|---|', ...ANCHORS, '');
  for (const m of missing) lines.push(`checkpoints/${m} is missing: create it with \`hepoly train recipes/${m}.yaml\`, then rerun this bench.`);
  const md = lines.join('\n');
  console.log(md);
  if (o.out) writeFileSync(o.out, `${md}\n`);
  if (o.json) writeFileSync(o.json, JSON.stringify(results, null, 2));
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
