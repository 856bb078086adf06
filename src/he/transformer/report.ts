import type { SequenceReport } from './validate.js';
import { coreReportJson } from '../report-json.js';
import { fmt } from './validate.js';

/** Human lines and the `--json` object of a transformer he-validate run (same keys as the CNN path where they mean the same). */

const COMPONENT_NAMES: Record<string, string> = {
  attention_products: 'attention products',
  power_softmax: 'power-softmax',
  reciprocal: 'reciprocal',
  mlp: 'MLP',
  norm: 'norm',
  embedding: 'embedding',
  head: 'pooling + head',
};

const ms = (v: number) => (v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(1)} ms`);

export function sequenceReportText(r: SequenceReport): string[] {
  const what = r.task === 'lm' ? 'next-character agreement' : 'agreement';
  const lines = [
    `${r.checkpoint}: ${r.samples} ${r.split} samples, ${r.mode === 'simulate' ? 'simulated CKKS' : 'CKKS (SEAL)'}, N=${r.params.polyModulusDegree}, [${r.params.coeffModulusBits.join(', ')}] = ${r.params.totalBits} bits, scale 2^${r.params.scaleBits}, ${r.params.levels} levels, 128-bit security`,
    `${what} ${fmt(r.agreement)}  encrypted accuracy ${fmt(r.encryptedAccuracy)}  plaintext accuracy ${fmt(r.plaintextAccuracy)}  max |logit error| ${fmt(r.maxAbsError)}`,
    `depth ${r.depth} levels without refresh; ${r.refresh === 'client' ? `${r.refreshes.count} client refreshes (${r.refreshes.ciphertexts} ciphertexts re-encrypted, ${ms(r.refreshMs)})` : 'no refresh'}`,
  ];
  for (const w of r.refreshes.where) lines.push(`  refresh at ${w.at}: ${w.times}x, ${w.ciphertexts} ciphertexts`);
  for (const c of r.reciprocals) lines.push(`reciprocal ${c.node}: Newton from a linear start on [${fmt(c.lo)}, ${fmt(c.hi)}], ${c.iterations} iterations, ${c.levels} levels, relative error bound ${fmt(c.errorBound)}`);
  lines.push(
    `server time per component (batch of ${r.samples} in one pass): ${Object.entries(r.componentMs)
      .map(([k, v]) => `${COMPONENT_NAMES[k] ?? k} ${ms(v)}`)
      .join(', ')}`,
  );
  lines.push(
    `keys ${ms(r.timings.keygenMs)}, encrypt ${ms(r.timings.encryptMs)}, evaluate ${ms(r.timings.evaluateMs)}, refresh (client) ${ms(r.refreshMs)}, decrypt ${ms(r.timings.decryptMs)}; latency ${ms(r.latencyMsPerSample)} per sample, amortized ${ms(r.amortizedMsPerSample)}`,
  );
  lines.push(`ciphertexts: ${r.ciphertexts.input} in, ${r.ciphertexts.output} out; ${r.ctCtMults} ciphertext and ${r.ptMults} plaintext products`);
  if (r.heapRecycles.count) lines.push(`SEAL heap replaced ${r.heapRecycles.count}x between nodes (${ms(r.heapRecycles.ms)}, inside evaluate)`);
  return lines;
}

export function sequenceReportJson(r: SequenceReport): Record<string, unknown> {
  return {
    ...coreReportJson({ ...r, packing: 'batch' }),
    task: r.task,
    refresh: r.refresh,
    refreshes: r.refreshes.count,
    refreshed_ciphertexts: r.refreshes.ciphertexts,
    refresh_points: r.refreshes.where,
    refresh_ms: r.refreshMs,
    component_ms: r.componentMs,
    reciprocals: r.reciprocals.map((c) => ({ node: c.node, lo: c.lo, hi: c.hi, iterations: c.iterations, levels: c.levels, error_bound: c.errorBound })),
    ct_ct_mults: r.ctCtMults,
    pt_mults: r.ptMults,
    heap_recycles: r.heapRecycles.count,
    heap_recycle_ms: r.heapRecycles.ms,
    layers: r.layers?.map((l) => ({ node: l.node, level: l.level, max_abs_error: l.maxAbsError, max_abs: l.maxAbs })) ?? null,
  };
}
