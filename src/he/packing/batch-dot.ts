import type { CkksBackend } from '../backend.js';
import type { HeProgram, Step } from '../program.js';
import { weightedEntries } from '../linear-map.js';
import { size } from '../tensor-ops.js';
import { openPairSums } from '../pair-sums.js';
import { addBias, constant } from './batch.js';

/**
 * A `dot` step in batch packing (slot = sample, one ciphertext per element): for each output
 * element, the signed ciphertext-ciphertext products of its pairs are summed unrelinearized,
 * relinearized and rescaled once (one level for the whole sum: attention's score and value
 * products are such sums), with the step's plaintext terms encoded onto the products' scale
 * so they join the same rescale. No rotation: every pair reads whole ciphertexts.
 */

type DotStep = Extract<Step, { kind: 'dot' }>;
type Reader<C> = (t: number, i: number) => { c: C | null; release: () => void };

/** Element ids grouped by output: `start[o]..start[o+1]` index `order`. */
function groupByOutput(outs: Int32Array, n: number): { start: Int32Array; order: Int32Array } {
  const start = new Int32Array(n + 1);
  for (let k = 0; k < outs.length; k++) start[outs[k] + 1]++;
  for (let i = 0; i < n; i++) start[i + 1] += start[i];
  const fill = start.slice(0, n);
  const order = new Int32Array(outs.length);
  for (let k = 0; k < outs.length; k++) order[fill[outs[k]]++] = k;
  return { start, order };
}

/**
 * Operands at the step's input level, each read (and mod-switched) once per step: a score
 * product reads every key element once per query row.
 */
class OperandCache<C> {
  private cts = new Map<string, C | null>();
  private owned: C[] = [];
  constructor(
    private be: CkksBackend<C>,
    private read: Reader<C>,
    private level: number,
  ) {}
  get(t: number, i: number): C | null {
    const key = `${t}:${i}`;
    if (this.cts.has(key)) return this.cts.get(key)!;
    const r = this.read(t, i);
    let c: C | null = null;
    if (r.c) {
      c = this.be.clone(r.c);
      if (this.be.levelOf(c) > this.level) this.be.modSwitchInPlace(c, this.level);
      this.owned.push(c);
    }
    r.release();
    this.cts.set(key, c);
    return c;
  }
  free(): void {
    for (const c of this.owned) this.be.free(c);
  }
}

/** Outputs whose products are summed before they are relinearized and rescaled (bounds the live three-polynomial sums). */
const OUTPUT_CHUNK = 64;

export function runDot<C>(
  ctx: { program: HeProgram; be: CkksBackend<C> },
  s: DotStep,
  keep: (o: number) => boolean,
  out: Map<number, C | null>,
  read: Reader<C>,
): void {
  const { program: p, be } = ctx;
  const levelOut = be.topLevel - p.tensors[s.out].depth;
  const levelIn = levelOut + 1;
  const n = size(p.tensors[s.out].shape);
  const operands = new OperandCache(be, read, levelIn);
  const { start, order } = groupByOutput(s.pairs.out, n);
  const terms = s.terms.map((t) => ({ src: t.src, e: weightedEntries(t.op, keep) }));
  let withPairs = 0;
  for (let o = 0; o < n; o++) if (start[o + 1] > start[o]) withPairs++;
  const sums = openPairSums(be, levelIn, s.pairs.out.length / Math.max(1, withPairs));
  const zeros = new Set<string>();
  /** the operand's key once it is loaded, null for a known zero */
  const load = (t: number, i: number): string | null => {
    const key = `${t}:${i}`;
    if (zeros.has(key)) return null;
    if (!sums.has(key)) {
      const r = read(t, i);
      if (r.c) sums.load(key, r.c);
      else zeros.add(key);
      r.release();
      if (!r.c) return null;
    }
    return key;
  };
  const finishOutput = (o: number, acc: C | null) => {
    if (acc && be.relinearizeInPlace) be.relinearizeInPlace(acc);
    acc = addPlainTerms(be, terms, o, operands, acc, levelIn);
    if (!acc) {
      out.set(o, constant(be, p, s, o, be.scale, levelOut));
      return;
    }
    addBias(be, p, s, o, acc);
    be.rescaleInPlace(acc);
    out.set(o, acc);
  };
  const withoutProducts: number[] = [];
  try {
    let chunk = 0;
    for (let o = 0; o < n; o++) {
      if (!keep(o)) continue;
      let any = false;
      for (let k = start[o]; k < start[o + 1]; k++) {
        const e = order[k];
        // loading b may evict a (the sums ran out of kernel memory): load again until both are in
        for (let tries = 0; tries < 2; tries++) {
          const ka = load(s.a, s.pairs.a[e]);
          const kb = load(s.b, s.pairs.b[e]);
          if (!ka || !kb) break;
          if (!sums.has(ka) || !sums.has(kb)) continue;
          sums.add(o, ka, kb, !!s.pairs.sign && s.pairs.sign[e] < 0);
          any = true;
          break;
        }
      }
      if (!any) withoutProducts.push(o);
      if (++chunk === OUTPUT_CHUNK) {
        sums.finishEach(finishOutput);
        chunk = 0;
      }
    }
    sums.finishEach(finishOutput);
    for (const o of withoutProducts) finishOutput(o, null);
  } finally {
    sums.close();
    operands.free();
  }
}

/**
 * The plaintext terms of output `o`, each weight encoded so that its product lands on the
 * scale of the ciphertext products (or on scale * q when the output has no product).
 */
function addPlainTerms<C>(
  be: CkksBackend<C>,
  terms: { src: number; e: ReturnType<typeof weightedEntries> }[],
  o: number,
  operands: OperandCache<C>,
  acc: C | null,
  levelIn: number,
): C | null {
  let target = acc ? be.scaleOf(acc) : be.scale * be.prime(levelIn);
  for (const { src, e } of terms) {
    for (let k = 0; k < e.length; k++) {
      if (e.out[k] !== o) continue;
      const x = operands.get(src, e.inp[k]);
      if (!x) continue;
      const ptScale = target / be.scaleOf(x);
      if (acc) be.mulConstAddInPlace(acc, x, e.w[k], ptScale);
      else {
        acc = be.mulConst(x, e.w[k], ptScale);
        target = be.scaleOf(acc);
      }
    }
  }
  return acc;
}
