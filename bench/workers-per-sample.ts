/**
 * `npx tsx bench/workers-per-sample.ts CHECKPOINT [--samples S] [--team K] [--refresh client] [--packing sample]`:
 * one sample's latency under real SEAL with a team of K worker threads per sample
 * (`--workers-per-sample K`, K workers) against one worker per sample (the anchor: what
 * he-validate does without the flag), measured in the same run on the same held-out samples.
 * Prints one markdown table: latency and amortized time per sample, agreement, and the ratios.
 */
import { availableParallelism } from 'node:os';
import { validate, type ValidationReport } from '../src/he/validate.js';

const arg = (flag: string, fallback: string) => {
  const i = process.argv.indexOf(flag);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const checkpoint = process.argv[2];
if (!checkpoint || checkpoint.startsWith('--')) {
  console.error('usage: npx tsx bench/workers-per-sample.ts CHECKPOINT [--samples S] [--team K] [--refresh client] [--packing sample]');
  process.exit(2);
}
const samples = Number(arg('--samples', '3'));
const team = Number(arg('--team', String(Math.min(2, availableParallelism()))));
const refresh = arg('--refresh', 'none') as 'none' | 'client';
const packing = arg('--packing', 'sample') as 'sample';

const run = (workersPerSample: number): Promise<ValidationReport> => validate({ checkpoint, samples, packing, refresh, workers: team, workersPerSample });
const anchor = await run(1);
const ours = await run(team);
const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
const row = (name: string, r: ValidationReport) => `| ${name} | ${s(r.latencyMsPerSample)} | ${s(r.amortizedMsPerSample)} | ${(100 * r.agreement).toFixed(0)}% | ${r.maxAbsError.toExponential(1)} |`;
console.log(`${checkpoint}: ${samples} samples, ${packing} packing, --refresh ${refresh}, N=${ours.params.polyModulusDegree}, ${team} workers`);
console.log('| | latency per sample | amortized per sample | agreement | max logit error |');
console.log('|---|---:|---:|---:|---:|');
console.log(row('one worker per sample (anchor)', anchor));
console.log(row(`--workers-per-sample ${team}`, ours));
console.log(`latency ratio (anchor / ours): ${(anchor.latencyMsPerSample / ours.latencyMsPerSample).toFixed(2)}x; amortized ratio: ${(anchor.amortizedMsPerSample / ours.amortizedMsPerSample).toFixed(2)}x`);
