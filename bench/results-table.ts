/**
 * The README's results table: for every checkpoint under checkpoints/ (or those named), the
 * held-out accuracy measured now, the epochs, the training wall time and throughput recorded
 * in metrics.csv, and the backend it trained on.
 *
 *   npx tsx bench/results-table.ts [NAME...]
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadCheckpoint } from '../src/train/checkpoint.js';
import { evaluateSplit, heldOutSplit, toParams } from '../src/train/evaluate.js';
import { initBackend } from '../src/train/backend.js';

const root = 'checkpoints';
const names = process.argv.slice(2).length
  ? process.argv.slice(2)
  : readdirSync(root).filter((d) => existsSync(join(root, d, 'model.json'))).sort();

const backend = await initBackend();
console.log(`backend for evaluation: ${backend}\n`);
console.log('| checkpoint | model | params | held-out accuracy | epochs | train time | samples/s | trained on |');
console.log('|---|---|---:|---:|---:|---:|---:|---|');
for (const name of names) {
  const ckpt = loadCheckpoint(join(root, name));
  const split = await heldOutSplit(ckpt);
  const params = toParams(ckpt.weights);
  const r = evaluateSplit(ckpt.graph, params, split);
  for (const t of params.values()) t.dispose();
  const seconds = ckpt.metrics.reduce((a, m) => a + m.seconds, 0);
  const rate = ckpt.metrics.reduce((a, m) => a + m.samples_per_s, 0) / Math.max(1, ckpt.metrics.length);
  const nParams = [...ckpt.weights.values()].reduce((a, w) => a + w.data.length, 0);
  const model = ckpt.recipe.description ?? ckpt.recipe.model.kind;
  const time = seconds >= 90 ? `${(seconds / 60).toFixed(1)} min` : `${seconds.toFixed(0)} s`;
  console.log(
    `| ${name} | ${model} | ${nParams.toLocaleString('en')} | ${r.accuracy.toFixed(4)} (${split.name}) | ${ckpt.state.epochs_done} | ${time} | ${rate.toFixed(0)} | ${ckpt.state.backend} |`,
  );
}
