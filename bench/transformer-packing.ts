/**
 * Token packing against batch packing on a transformer checkpoint, in one run on the same
 * ring: real SEAL, `--refresh client`, the same held-out samples. Token packing runs first
 * (with `--params` as given, default auto); batch packing then gets the ring it chose.
 *
 *   npx tsx bench/transformer-packing.ts CHECKPOINT [--samples 10] [--params auto|FILE]
 *
 * Prints one markdown table and the ratio batch / token of the evaluation time.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fmtMs, validate, type ValidationReport } from '../src/he/validate.js';

function args() {
  const a = process.argv.slice(2);
  const val = (k: string) => {
    const i = a.indexOf(k);
    return i >= 0 ? a[i + 1] : undefined;
  };
  const checkpoint = a.find((x, i) => !x.startsWith('--') && !a[i - 1]?.startsWith('--'));
  if (!checkpoint) throw new Error('usage: npx tsx bench/transformer-packing.ts CHECKPOINT [--samples 10] [--params auto|FILE]');
  return { checkpoint, samples: Number(val('--samples') ?? 10), params: val('--params') ?? 'auto' };
}

function row(r: ValidationReport): string {
  const refreshed = r.refreshes ? r.refreshes.points.reduce((s, p) => s + p.ciphertexts, 0) : 0;
  return [
    r.packing,
    `N=${r.params.polyModulusDegree} [${r.params.coeffModulusBits.join(', ')}]`,
    `${Math.round(r.agreement * r.samples)}/${r.samples}`,
    r.maxAbsError.toExponential(1),
    `${r.refreshes?.perPass ?? 0}`,
    `${refreshed}`,
    `${r.ops.rotations}`,
    fmtMs(r.timings.evaluateMs),
  ].join(' | ');
}

async function main(): Promise<void> {
  const o = args();
  const run = (packing: 'token' | 'batch', params: string) => {
    process.stderr.write(`he-validate ${o.checkpoint} --packing ${packing} --params ${params} --samples ${o.samples} --refresh client ...\n`);
    return validate({ checkpoint: o.checkpoint, samples: o.samples, packing, params, refresh: 'client', log: (l) => process.stderr.write(`  ${l}\n`) });
  };
  const token = await run('token', o.params);
  const dir = mkdtempSync(join(tmpdir(), 'hepoly-bench-'));
  try {
    const file = join(dir, 'params.json');
    const p = token.params;
    writeFileSync(file, JSON.stringify({ poly_modulus_degree: p.polyModulusDegree, coeff_modulus_bits: p.coeffModulusBits, scale_bits: p.scaleBits }));
    const batch = await run('batch', file);
    console.log('| packing | chain | agreement | max logit error | refreshes | refreshed ciphertexts per pass | rotations | evaluate |');
    console.log('|---|---|---:|---:|---:|---:|---:|---:|');
    console.log(`| ${row(token)} |`);
    console.log(`| ${row(batch)} |`);
    console.log(`\nevaluate, batch / token: ${(batch.timings.evaluateMs / token.timings.evaluateMs).toFixed(2)}x`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
