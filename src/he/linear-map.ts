import type { StructOp, WeightedOp } from './program.js';
import { forEachConvTap, forEachPoolTap } from './tensor-ops.js';

/**
 * A weighted op as its non-zero matrix entries (output, input, weight): batch packing turns
 * each entry into one scalar product, sample packing sorts them into diagonals. Zero weights
 * are dropped here once, so no packing ever multiplies by an all-zero plaintext (which SEAL
 * refuses: the product would be a transparent ciphertext).
 */
export interface Entries {
  out: Int32Array;
  inp: Int32Array;
  w: Float64Array;
  length: number;
}

/** Typed arrays that double as they fill: a stacked CNN layer has tens of millions of entries. */
class EntryBuilder {
  private out = new Int32Array(1024);
  private inp = new Int32Array(1024);
  private w = new Float64Array(1024);
  private n = 0;
  push(o: number, i: number, w: number): void {
    if (w === 0) return;
    if (this.n === this.out.length) this.grow();
    this.out[this.n] = o;
    this.inp[this.n] = i;
    this.w[this.n] = w;
    this.n++;
  }
  private grow(): void {
    const cap = this.out.length * 2;
    const out = new Int32Array(cap);
    const inp = new Int32Array(cap);
    const w = new Float64Array(cap);
    out.set(this.out);
    inp.set(this.inp);
    w.set(this.w);
    [this.out, this.inp, this.w] = [out, inp, w];
  }
  build(): Entries {
    return { out: this.out.slice(0, this.n), inp: this.inp.slice(0, this.n), w: this.w.slice(0, this.n), length: this.n };
  }
}

/**
 * Entries of `op` whose output element passes `keep` (batch packing asks for one group of
 * output channels at a time).
 */
export function weightedEntries(op: WeightedOp, keep: (o: number) => boolean = () => true): Entries {
  const b = new EntryBuilder();
  switch (op.kind) {
    case 'dense': {
      const { inSize, units, kernel } = op;
      const cols: number[] = [];
      for (let j = 0; j < units; j++) if (keep(j)) cols.push(j);
      for (let i = 0; i < inSize; i++) for (const j of cols) b.push(j, i, kernel[i * units + j]);
      break;
    }
    case 'conv':
      forEachConvTap(op.geom, (o, i, k) => {
        if (keep(o)) b.push(o, i, op.kernel[k]);
      });
      break;
    case 'scale':
      for (let i = 0; i < op.factors.length; i++) if (keep(i)) b.push(i, i, op.factors[i]);
      break;
    case 'tokens':
      for (let t = 0; t < op.tokens; t++) {
        for (let j = 0; j < op.units; j++) {
          if (!keep(t * op.units + j)) continue;
          for (let i = 0; i < op.inSize; i++) b.push(t * op.units + j, t * op.inSize + i, op.kernel[i * op.units + j]);
        }
      }
      break;
  }
  return b.build();
}

/** Entries (weight 1) of a struct op: which input elements each output element sums. */
export function structEntries(op: StructOp, inShape: number[], keep: (o: number) => boolean = () => true): Entries {
  const b = new EntryBuilder();
  switch (op.kind) {
    case 'sumpool':
      forEachPoolTap(inShape, op.size, op.stride, (o, i) => {
        if (keep(o)) b.push(o, i, 1);
      });
      break;
    case 'globalsum': {
      const C = inShape[2];
      const n = inShape[0] * inShape[1] * C;
      for (let i = 0; i < n; i++) if (keep(i % C)) b.push(i % C, i, 1);
      break;
    }
    case 'pad': {
      const [H, W, C] = inShape;
      const W2 = W + op.left + op.right;
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          for (let c = 0; c < C; c++) {
            const o = ((y + op.top) * W2 + x + op.left) * C + c;
            if (keep(o)) b.push(o, (y * W + x) * C + c, 1);
          }
        }
      }
      break;
    }
    case 'flatten': {
      const n = inShape.reduce((a, c) => a * c, 1);
      for (let i = 0; i < n; i++) if (keep(i)) b.push(i, i, 1);
      break;
    }
    case 'gather':
      for (let i = 0; i < op.index.length; i++) if (keep(i)) b.push(i, op.index[i], 1);
      break;
    case 'rotate':
      throw new Error('internal: a rotation has no element matrix (token packing runs it on whole ciphertexts)');
  }
  return b.build();
}

/** Order of entries by input element (counting sort), so each input is loaded once. */
export function orderByInput(e: Entries, inputs: number): Int32Array {
  const count = new Int32Array(inputs + 1);
  for (let k = 0; k < e.length; k++) count[e.inp[k] + 1]++;
  for (let i = 0; i < inputs; i++) count[i + 1] += count[i];
  const order = new Int32Array(e.length);
  for (let k = 0; k < e.length; k++) order[count[e.inp[k]]++] = k;
  return order;
}
