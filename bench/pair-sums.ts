/**
 * `npx tsx bench/pair-sums.ts [N]`: sums of ciphertext products on the residues
 * (seal-pair-sums.ts) against SEAL's products one at a time (ProductPairSums), for P pairs per
 * output, 64 outputs, relinearization included. Its last line's ratios (SEAL / fused) are what
 * FUSED_MIN_PAIRS (src/he/pair-sums.ts) is read from: the fused sums pay where the ratio is > 1.
 * Each output's pairs read their own first operand and one of 4 shared second operands, as a
 * division's rows do. Wall ms, one thread, fastest of 3.
 */
import { HEClient } from '../src/he/client.js';
import { loadEvaluationKeys } from '../src/he/keys.js';
import { ProductPairSums, type PairSums } from '../src/he/pair-sums.js';
import { SealBackend } from '../src/he/seal-backend.js';
import type { CipherText } from '../src/he/seal.js';

const N = Number(process.argv[2] ?? 4096);
const params = N === 8192 ? { polyModulusDegree: N, coeffModulusBits: [38, 28, 28, 28, 28, 28, 38], scaleBits: 28 } : { polyModulusDegree: N, coeffModulusBits: [39, 29, 39], scaleBits: 29 };
const client = await HEClient.create(params);
const be = new SealBackend(client.ctx, loadEvaluationKeys(client.ctx, client.publicBundle([])));
const OUTPUTS = 64;
const SHARED = 4;
const encrypt = (i: number) => be.deserialize(client.encrypt([Float64Array.from({ length: 8 }, (_, k) => Math.sin(i + k))])[0]);

function timeSums(open: () => PairSums<CipherText>, a: CipherText[], b: CipherText[], pairs: number): number {
  let best = Infinity;
  for (let rep = 0; rep < 3; rep++) {
    const t = performance.now();
    const sums = open();
    for (let o = 0; o < OUTPUTS; o++) {
      for (let k = 0; k < pairs; k++) {
        const ka = `a${o * pairs + k}`;
        const kb = `b${o % SHARED}`;
        if (!sums.has(ka)) sums.load(ka, a[o * pairs + k]);
        if (!sums.has(kb)) sums.load(kb, b[o % SHARED]);
        sums.add(o, ka, kb, false);
      }
    }
    sums.finishEach((_o, c) => {
      be.relinearizeInPlace(c);
      be.free(c);
    });
    sums.close();
    best = Math.min(best, performance.now() - t);
  }
  return best / OUTPUTS;
}

const rows: Record<string, number> = {};
console.log(`N=${N}, chain [${params.coeffModulusBits.join(', ')}], ${OUTPUTS} outputs; ms per output`);
console.log('| pairs per output | SEAL products | fused sums | SEAL / fused |\n|---:|---:|---:|---:|');
for (const pairs of [1, 2, 3, 4, 8]) {
  const a = Array.from({ length: OUTPUTS * pairs }, (_, i) => encrypt(i));
  const b = Array.from({ length: SHARED }, (_, i) => encrypt(1000 + i));
  const level = be.levelOf(a[0]);
  const seal = timeSums(() => new ProductPairSums(be, level), a, b, pairs);
  const fused = timeSums(() => be.pairSums(level)!, a, b, pairs);
  rows[`p${pairs}`] = +(seal / fused).toFixed(2);
  console.log(`| ${pairs} | ${seal.toFixed(3)} | ${fused.toFixed(3)} | ${(seal / fused).toFixed(2)} |`);
  for (const c of [...a, ...b]) be.free(c);
}
console.log(JSON.stringify({ N, ...rows }));
