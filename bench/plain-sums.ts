/**
 * `npx tsx bench/plain-sums.ts [--repeat R]`: one convolution's inner sums in sample packing,
 * on the residues (seal-plain-sums.ts) against SEAL's multiply_plain + add sequence (the
 * anchor, what the evaluator ran before), at N=8192 with resnet-poly's chain and at each level
 * a segment's convolutions meet. A step as resnet-poly's first stage has them: 36 rotated
 * inputs, 16 giant-step sums of 36 distinct diagonals each (576 products). Reading the inputs'
 * residues and writing the sums are included. Wall ms, one thread, median of R.
 */
import { HEClient } from '../src/he/client.js';
import { loadEvaluationKeys } from '../src/he/keys.js';
import { SealBackend } from '../src/he/seal-backend.js';
import type { CipherText, PlainText } from '../src/he/seal.js';
import type { ResiduePlain } from '../src/he/plain-sums.js';

const repeat = Number(process.argv[process.argv.indexOf('--repeat') + 1] || 5);
const params = { polyModulusDegree: 8192, coeffModulusBits: [39, 28, 28, 28, 28, 28, 39], scaleBits: 28 };
const client = await HEClient.create(params);
const be = new SealBackend(client.ctx, loadEvaluationKeys(client.ctx, client.publicBundle([])));
const INPUTS = 36;
const SUMS = 16;
const vec = (k: number) => Float64Array.from({ length: be.slots }, (_, s) => Math.sin(k * 0.37 + s * 0.011));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function time(fn: () => void): number {
  fn();
  const ts: number[] = [];
  for (let r = 0; r < repeat; r++) {
    const t = performance.now();
    fn();
    ts.push(performance.now() - t);
  }
  return median(ts);
}

const rows: string[] = ['| level | products | SEAL multiply_plain + add (anchor), ms | residue sums, ms | ratio |', '|---:|---:|---:|---:|---:|'];
const ratios: Record<string, number> = {};
for (const level of [5, 3, 1]) {
  const xs: CipherText[] = Array.from({ length: INPUTS }, (_, i) => {
    const c = be.deserialize(client.encrypt([vec(i)])[0]);
    if (level < be.topLevel) be.modSwitchInPlace(c, level);
    return c;
  });
  const ptScale = be.prime(level);
  const plains: PlainText[] = Array.from({ length: SUMS * INPUTS }, (_, k) => be.encode(vec(1000 + k), ptScale, level));
  const residues: ResiduePlain[] = Array.from({ length: SUMS * INPUTS }, (_, k) => be.encodeResidues(vec(1000 + k), ptScale, level)!);
  const seal = time(() => {
    for (let o = 0; o < SUMS; o++) {
      const acc = be.mulPlain(xs[0], plains[o * INPUTS]);
      for (let i = 1; i < INPUTS; i++) be.mulPlainAddInPlace(acc, xs[i], plains[o * INPUTS + i]);
      be.free(acc);
    }
  });
  const ours = time(() => {
    const sums = be.plainSums(level)!;
    xs.forEach((x, i) => sums.load(`x${i}`, x));
    for (let o = 0; o < SUMS; o++) be.free(sums.sum(xs.map((_, i) => ({ key: `x${i}`, p: residues[o * INPUTS + i] }))));
    sums.close();
  });
  rows.push(`| ${level} | ${SUMS * INPUTS} | ${seal.toFixed(1)} | ${ours.toFixed(1)} | ${(seal / ours).toFixed(2)} |`);
  ratios[`level${level}`] = +(seal / ours).toFixed(2);
  for (const p of plains) be.freePlain(p);
  for (const x of xs) be.free(x);
}
console.log(rows.join('\n'));
console.log(JSON.stringify(ratios));
process.exit(0);
