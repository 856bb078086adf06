/**
 * The skip-variant table of issue 6: the same polynomial ResNet on Fashion-MNIST with
 * standard, Dirac and shared-source skips, trained alike, then validated under CKKS with
 * `--refresh client`: test accuracy, HE operations per sample, levels, client refreshes,
 * encrypted latency and agreement with the plaintext model.
 *
 *   nice -n 10 npx tsx bench/resnet-skips.ts [--dir DIR] [--samples 3] [--depth 14] [--epochs 3] [--limit 12000] [--mode encrypt|simulate]
 *   npx tsx bench/resnet-skips.ts --checkpoints standard=checkpoints/resnet-poly,shared-source=checkpoints/resnet-poly-shared-source,dirac=checkpoints/resnet-poly-dirac
 *
 * Checkpoints are DIR/<variant> (default bench-out/resnet-skips); a missing one is trained
 * first (widths [8, 16, 32], quad activations, range regularization, no distillation).
 * `--params FILE` fixes the CKKS parameters for every variant (default auto).
 * `--checkpoints` names trained ones instead (e.g. resnet-poly trained with each
 * `--set model.skip=...`); the table is written to DIR all the same.
 * Prints a markdown table and writes DIR/table.md and DIR/table.json.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadRecipe } from '../src/recipe/load.js';
import { train } from '../src/train/loop.js';
import { loadCheckpoint } from '../src/train/checkpoint.js';
import { evaluateSplit, heldOutSplit, toParams } from '../src/train/evaluate.js';
import { initBackend } from '../src/train/backend.js';
import { validate, fmtMs } from '../src/he/validate.js';

const args = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const dir = resolve(opt('dir', 'bench-out/resnet-skips'));
const samples = Number(opt('samples', '3'));
const mode = opt('mode', 'encrypt') as 'encrypt' | 'simulate';

/** The recipe every variant shares: only model.skip differs. */
function overrides(skip: string): string[] {
  return [
    'model.activation={kind: quad}',
    `model.depth=${opt('depth', '14')}`,
    'model.widths=[8, 16, 32]',
    `model.skip=${skip}`,
    `train.epochs=${opt('epochs', '3')}`,
    'train.batch=64',
    `data.limit=${opt('limit', '12000')}`,
    'data.test_limit=1000',
    'data.split={validation: 0.02}',
    'range={bound: 8, weight: 0.001}',
  ];
}

/** `--checkpoints variant=DIR,...` */
function parseCheckpoints(v: string | undefined): Map<string, string> {
  const pairs = (v ?? '').split(',').map((kv) => kv.split('='));
  if (!v || pairs.some((p) => p.length !== 2 || !p[0] || !p[1])) {
    throw new Error(`--checkpoints ${JSON.stringify(v ?? '')}: expected variant=DIR pairs separated by commas, e.g. --checkpoints standard=checkpoints/resnet-poly,dirac=checkpoints/resnet-poly-dirac`);
  }
  return new Map(pairs as [string, string][]);
}

async function main(): Promise<void> {
  const given = args.includes('--checkpoints') ? parseCheckpoints(opt('checkpoints', '')) : null;
  const variants = given ? [...given.keys()] : ['standard', 'dirac', 'shared-source'];
  mkdirSync(dir, { recursive: true });
  await initBackend();
  const rows: Record<string, unknown>[] = [];
  for (const skip of variants) {
    const ckptDir = given ? resolve(given.get(skip)!) : join(dir, skip);
    if (!existsSync(join(ckptDir, 'model.json'))) {
      if (given) throw new Error(`${ckptDir}: no checkpoint there`);
      console.error(`training ${skip} -> ${ckptDir}`);
      const { recipe } = loadRecipe('recipes/resnet-relu.yaml', overrides(skip));
      await train({ recipe: { ...recipe, name: `resnet-${skip}` }, recipeFile: 'recipes/resnet-relu.yaml', outDir: ckptDir, callbacks: {} });
    }
    const ckpt = loadCheckpoint(ckptDir);
    const split = await heldOutSplit(ckpt);
    const params = toParams(ckpt.weights);
    const acc = evaluateSplit(ckpt.graph, params, split).accuracy;
    for (const t of params.values()) t.dispose();
    console.error(`validating ${skip} under CKKS (${mode}, ${samples} samples, --refresh client)`);
    const r = await validate({ checkpoint: ckptDir, samples, refresh: 'client', mode, workers: 2, params: opt('params', 'auto'), log: (l) => console.error(`  ${l}`) });
    const per = (v: number) => Math.round(v / r.samples);
    rows.push({
      variant: skip,
      test_accuracy: acc,
      test_samples: split.count,
      agreement: r.agreement,
      he_samples: r.samples,
      max_abs_error: r.maxAbsError,
      depth: r.depth,
      ring: r.params.polyModulusDegree,
      levels: r.params.levels,
      refreshes_per_sample: r.refreshes?.perPass ?? 0,
      refresh_ciphertexts_per_sample: r.refreshes?.points.reduce((a, p) => a + p.ciphertexts, 0) ?? 0,
      rotations: per(r.ops.rotations),
      ct_ct_mults: per(r.ops.ctCtMults),
      pt_mults: per(r.ops.ptMults),
      additions: per(r.ops.additions),
      rescales: per(r.ops.rescales),
      latency_ms_per_sample: r.latencyMsPerSample,
      peak_rss_mb: r.peakRssMb,
      worker_heap_mb: r.workerHeapMb,
    });
  }

  const md = [
    `| skip | test accuracy | HE agreement | depth | N, levels | refreshes / sample | rotations | ct-ct mults | pt mults | additions | latency / sample (${mode}) | peak RSS |`,
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.variant} | ${((r.test_accuracy as number) * 100).toFixed(2)}% (${r.test_samples}) | ${((r.agreement as number) * 100).toFixed(0)}% of ${r.he_samples} | ${r.depth} | ${r.ring}, ${r.levels} | ${r.refreshes_per_sample} (${r.refresh_ciphertexts_per_sample} cts) | ${r.rotations} | ${r.ct_ct_mults} | ${r.pt_mults} | ${r.additions} | ${fmtMs(r.latency_ms_per_sample as number)} | ${(r.peak_rss_mb as number).toFixed(0)} MiB |`,
    ),
  ].join('\n');
  console.log(md);
  writeFileSync(join(dir, 'table.md'), `${md}\n`);
  writeFileSync(join(dir, 'table.json'), `${JSON.stringify(rows, null, 2)}\n`);
}

// errors end in one message (an uncaught one would print the wasm backend's minified source)
main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
