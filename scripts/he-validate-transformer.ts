/**
 * Quick check of a transformer checkpoint on a simulated chain as tall as it is deep (no
 * security check, no refresh): agreement, per-layer error, latency per component. The real,
 * secure run is `hepoly he-validate CHECKPOINT [--refresh client]`. Usage: npx tsx scripts/he-validate-transformer.ts CHECKPOINT [SAMPLES] [--trace] [--ring=N]
 * (--ring: ring degree of the simulation's noise model and slot count, default 4096)
 */
import { loadCheckpoint } from '../src/train/checkpoint.js';
import { initBackend } from '../src/train/backend.js';
import { validateSequenceCheckpoint } from '../src/he/transformer/validate.js';

const [dir, samples = '10'] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const trace = process.argv.includes('--trace');
const ring = process.argv.find((a) => a.startsWith('--ring='));
await initBackend('cpu');
const ckpt = loadCheckpoint(dir);
const t0 = performance.now();
const r = await validateSequenceCheckpoint(ckpt, { samples: Number(samples), trace, ringDegree: ring ? Number(ring.slice(7)) : undefined });
const fmt = (v: number) => (Math.abs(v) >= 1e-2 || v === 0 ? v.toFixed(4) : v.toExponential(2));
console.log(`${dir}: ${r.samples} samples, simulated CKKS (N=${r.params.polyModulusDegree}, scale 2^${r.params.scaleBits}, ${r.report.levelsUsed} levels used)`);
console.log(`agreement ${fmt(r.agreement)}  encrypted accuracy ${fmt(r.encryptedAccuracy)}  plaintext accuracy ${fmt(r.plaintextAccuracy)}  max |logit error| ${fmt(r.maxLogitError)}`);
for (const c of r.report.reciprocals) console.log(`reciprocal ${c.node}: Newton on [${fmt(c.lo)}, ${fmt(c.hi)}], ${c.iterations} iterations, ${c.levels} levels, relative error bound ${fmt(c.errorBound)}`);
console.log(`latency per component (ms per sample, batch of ${r.samples} in one pass): ${Object.entries(r.msPerSample).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`);
console.log(`ciphertext products ${r.report.ctCtMults}, plaintext products ${r.report.ptMults}, wall ${((performance.now() - t0) / 1000).toFixed(1)} s`);
if (trace) for (const l of r.layers) console.log(`  ${l.node.padEnd(12)} level ${String(l.level).padStart(3)}  max|err| ${fmt(l.maxAbsError)}  (max|value| ${fmt(l.maxAbs)})`);
console.log(JSON.stringify({ checkpoint: dir, samples: r.samples, agreement: r.agreement, levels: r.report.levelsUsed, ms_per_sample: r.msPerSample, reciprocals: r.report.reciprocals }));
