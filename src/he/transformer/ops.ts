import type { CkksBackend } from '../backend.js';
import type { NewtonApprox } from '../../layers/reciprocal.js';

/**
 * CKKS building blocks of the transformer evaluator, written against `CkksBackend` only (so
 * they run on SEAL and on the float64 simulation alike). Values are batch-packed: one
 * ciphertext holds one scalar of the network for every sample (slot s = sample s), so a
 * matrix product is sums of ciphertext products and needs no rotation.
 *
 * Level and scale discipline: every ciphertext is at scale `be.scale` (Delta) between ops.
 * A plaintext factor is encoded at the scale of the prime the next rescale drops, so the
 * rescale brings the product back to exactly Delta; a ciphertext product Delta^2 / q is set
 * back to Delta (the primes are chosen ~Delta; the relative error is that of q vs Delta).
 * Operands at different levels are brought to the lower one by modulus switching (free).
 */

export class HeOps<C> {
  /** ciphertext-ciphertext products, for the report */
  ctCt = 0;
  ptMults = 0;
  /**
   * Gives ciphertexts `need` levels before a step that spends them (client refresh, see
   * refresh.ts), freeing the replaced ones when `owned`. The default trusts the chain.
   */
  ensure: (cts: C[], need: number, at: string, owned: boolean) => C[] = (cts) => cts;
  /**
   * Run plaintext-weight layers on the last level that still allows their rescale (inputs
   * modulus-switched down first). With client refresh this pays: a linear layer multiplies
   * each input by as many weights as it has outputs, at a cost proportional to the primes
   * left, while refreshing its outputs afterwards costs one round trip per output.
   */
  linearAtLowest = false;

  constructor(readonly be: CkksBackend<C>) {}

  level(c: C): number {
    return this.be.levelOf(c);
  }

  /** A copy of `c` at `level` (<= its own). */
  at(c: C, level: number): C {
    const out = this.be.clone(c);
    if (this.be.levelOf(out) > level) this.be.modSwitchInPlace(out, level);
    return out;
  }

  private rescaled(c: C): C {
    this.be.rescaleInPlace(c);
    const s = this.be.scaleOf(c);
    if (Math.abs(s / this.be.scale - 1) > 1e-3) throw new Error(`internal: scale 2^${Math.log2(s).toFixed(2)} drifted from 2^${Math.log2(this.be.scale)}: the primes must be close to the scale`);
    this.be.setScale(c, this.be.scale);
    return c;
  }

  /**
   * SEAL grows a product to three polynomials and keeps that allocation after relinearizing
   * and rescaling: a copy takes two thirds of it (a third less at the next level), and the big
   * block goes back to the pool for the next product. Wide tensors of products (an MLP's
   * activation, attention scores) are what fills the heap.
   */
  private compact(c: C): C {
    const out = this.be.clone(c);
    this.be.free(c);
    return out;
  }

  /** a * b, one level. */
  mul(a: C, b: C): C {
    const L = Math.min(this.level(a), this.level(b));
    const aa = this.level(a) > L ? this.at(a, L) : a;
    const bb = this.level(b) > L ? this.at(b, L) : b;
    this.ctCt++;
    const out = aa === bb ? this.be.square(aa) : this.be.multiply(aa, bb);
    if (aa !== a) this.be.free(aa);
    if (bb !== b) this.be.free(bb);
    return this.compact(this.rescaled(out));
  }

  /**
   * sum_i a_i b_i, one level: the products stay unrelinearized while they are summed, so the
   * sum pays one relinearization and one rescale instead of one per product (attention's
   * score and value products are such sums).
   */
  dot(as: C[], bs: C[]): C {
    const L = Math.min(...as.map((c) => this.level(c)), ...bs.map((c) => this.level(c)));
    const lazy = !!(this.be.multiplyNoRelin && this.be.relinearizeInPlace);
    let acc: C | null = null;
    for (let i = 0; i < as.length; i++) {
      const a = this.level(as[i]) > L ? this.at(as[i], L) : as[i];
      const b = this.level(bs[i]) > L ? this.at(bs[i], L) : bs[i];
      this.ctCt++;
      const p = lazy ? this.be.multiplyNoRelin!(a, b) : this.be.multiply(a, b);
      if (a !== as[i]) this.be.free(a);
      if (b !== bs[i]) this.be.free(b);
      if (!acc) acc = p;
      else {
        this.be.addInPlace(acc, p);
        this.be.free(p);
      }
    }
    if (!acc) throw new Error('internal: empty dot product');
    if (lazy) this.be.relinearizeInPlace!(acc);
    return this.compact(this.rescaled(acc));
  }

  square(a: C): C {
    this.ctCt++;
    return this.compact(this.rescaled(this.be.square(a)));
  }

  /** c * value, one level (value 0 gives an encryption of zeros one level down). */
  mulConst(c: C, value: number): C {
    const L = this.level(c);
    if (value === 0) return this.zero(L - 1);
    this.ptMults++;
    return this.rescaled(this.be.mulConst(c, value, this.be.prime(L)));
  }

  zero(level: number): C {
    return this.be.encryptVec(new Float64Array(this.be.slots), this.be.scale, level);
  }

  /** a + b (a new ciphertext, at the lower level). */
  add(a: C, b: C): C {
    const L = Math.min(this.level(a), this.level(b));
    const out = this.at(a, L);
    const bb = this.level(b) > L ? this.at(b, L) : b;
    this.be.addInPlace(out, bb);
    if (bb !== b) this.be.free(bb);
    return out;
  }

  /** a - b. */
  sub(a: C, b: C): C {
    const L = Math.min(this.level(a), this.level(b));
    const out = this.at(a, L);
    const bb = this.level(b) > L ? this.at(b, L) : b;
    this.be.subInPlace(out, bb);
    if (bb !== b) this.be.free(bb);
    return out;
  }

  /** c + value on a temporary the caller hands over (no copy: SEAL's heap is the limit). */
  shifted(c: C, value: number): C {
    if (value !== 0) this.be.addConstInPlace(c, value);
    return c;
  }

  addConst(c: C, value: number): C {
    const out = this.be.clone(c);
    if (value !== 0) this.be.addConstInPlace(out, value);
    return out;
  }

  /** sum of ciphertexts (additions only). */
  sum(cs: C[]): C {
    const L = Math.min(...cs.map((c) => this.level(c)));
    const acc = this.at(cs[0], L);
    for (let i = 1; i < cs.length; i++) {
      const b = this.level(cs[i]) > L ? this.at(cs[i], L) : cs[i];
      this.be.addInPlace(acc, b);
      if (b !== cs[i]) this.be.free(b);
    }
    return acc;
  }

  /**
   * out_j = sum_i w(i, j) x_i + bias_j for j < units: one level. Zero weights are skipped.
   * `w(i, j)` reads the (folded) kernel.
   */
  linear(xs: C[], units: number, w: (i: number, j: number) => number, bias: (j: number) => number): C[] {
    const low = Math.min(...xs.map((c) => this.level(c)));
    const L = this.linearAtLowest ? Math.min(1, low) : low;
    const al = xs.map((c) => (this.level(c) > L ? this.at(c, L) : c));
    const q = this.be.prime(L);
    const out: C[] = [];
    for (let j = 0; j < units; j++) {
      let acc: C | null = null;
      for (let i = 0; i < al.length; i++) {
        const v = w(i, j);
        if (v === 0) continue;
        this.ptMults++;
        if (!acc) acc = this.be.mulConst(al[i], v, q);
        else this.be.mulConstAddInPlace(acc, al[i], v, q);
      }
      const o = acc ? this.rescaled(acc) : this.zero(L - 1);
      const b = bias(j);
      if (b !== 0) this.be.addConstInPlace(o, b);
      out.push(o);
    }
    al.forEach((c, i) => c !== xs[i] && this.be.free(c));
    return out;
  }

  /** x^p for an even p by repeated squaring: log2(p) levels for a power of two. */
  power(x: C, p: number): C {
    let result: C | null = null;
    let base = this.be.clone(x);
    let e = p;
    while (e > 0) {
      if (e & 1) {
        const next: C = result ? this.mul(result, base) : this.be.clone(base);
        if (result) this.be.free(result);
        result = next;
      }
      e >>= 1;
      if (e > 0) {
        const sq = this.square(base);
        this.be.free(base);
        base = sq;
      }
    }
    this.be.free(base);
    return result!;
  }

  /**
   * 1/a by Newton from the linear start fitted to the range (layers/reciprocal.ts):
   * y0 = c0 - c1 a (1 level), then y <- 2y - y (a y) (2 levels per iteration).
   */
  reciprocal(a: C, f: NewtonApprox): C {
    let y = this.shifted(this.mulConst(a, -f.c1), f.c0);
    for (let k = 0; k < f.iterations; k++) {
      const ay = this.mul(a, y);
      const yay = this.mul(y, ay);
      const twoY = this.add(y, y);
      const next = this.sub(twoY, yay);
      [ay, yay, twoY, y].forEach((c) => this.be.free(c));
      y = next;
    }
    return y;
  }

  /**
   * `reciprocal` of several ciphertexts in lock step, so that a refresh between iterations
   * sends them back together. The inputs stay owned by the caller.
   */
  reciprocalMany(as: C[], f: NewtonApprox, at: string): C[] {
    // own copies (a refresh replaces and frees them); a is read by every step, so a refresh
    // brings it to the top level, where it stays
    let a = this.ensure(as.map((c) => this.be.clone(c)), this.be.topLevel, at, true);
    let y = a.map((c) => this.shifted(this.mulConst(c, -f.c1), f.c0));
    for (let k = 0; k < f.iterations; k++) {
      // one round trip for both (a keeps its level: products copy it down)
      const both = this.ensure([...a, ...y], 2, at, true);
      a = both.slice(0, a.length);
      y = both.slice(a.length);
      y = y.map((yi, i) => {
        const ay = this.mul(a[i], yi);
        const yay = this.mul(yi, ay);
        const twoY = this.add(yi, yi);
        const next = this.sub(twoY, yay);
        [ay, yay, twoY, yi].forEach((c) => this.be.free(c));
        return next;
      });
    }
    a.forEach((c) => this.be.free(c));
    return y;
  }

  /** `invSqrt` of several ciphertexts in lock step (refreshes between iterations); inputs stay the caller's. */
  invSqrtMany(as: C[], f: NewtonApprox, at: string): C[] {
    const a = this.ensure(as.map((c) => this.be.clone(c)), this.be.topLevel, at, true);
    let y = a.map((c) => this.shifted(this.mulConst(c, -f.c1), f.c0));
    let halfA = a.map((c) => this.mulConst(c, -0.5));
    a.forEach((c) => this.be.free(c));
    for (let k = 0; k < f.iterations; k++) {
      const both = this.ensure([...halfA, ...y], 2, at, true);
      halfA = both.slice(0, halfA.length);
      y = both.slice(halfA.length);
      y = y.map((yi, i) => {
        const y2 = this.square(yi);
        const u = this.mul(halfA[i], yi);
        const w = this.mul(u, y2);
        const m = this.mulConst(yi, 1.5);
        const next = this.add(m, w);
        [y2, u, w, m, yi].forEach((c) => this.be.free(c));
        return next;
      });
    }
    halfA.forEach((c) => this.be.free(c));
    return y;
  }

  /**
   * a^-1/2 by Newton: y0 = c0 - c1 a, then y <- 1.5 y + (-0.5 a y) y^2, where y^2, (-0.5 a) y
   * and 1.5 y run in parallel: 2 levels per iteration (plus one for -0.5 a, off the path).
   */
  invSqrt(a: C, f: NewtonApprox): C {
    let y = this.shifted(this.mulConst(a, -f.c1), f.c0);
    const halfA = this.mulConst(a, -0.5);
    for (let k = 0; k < f.iterations; k++) {
      const y2 = this.square(y);
      const u = this.mul(halfA, y);
      const w = this.mul(u, y2);
      const m = this.mulConst(y, 1.5);
      const next = this.add(m, w);
      [y2, u, w, m, y].forEach((c) => this.be.free(c));
      y = next;
    }
    this.be.free(halfA);
    return y;
  }
}
