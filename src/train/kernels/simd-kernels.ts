/**
 * Hand-written WebAssembly SIMD kernels for the hot spots of a polynomial network's training
 * step that tfjs-backend-wasm runs slowly or as many small ops (measured per kernel with
 * bench/train-speed.ts --profile):
 *
 *  - polyForward / polyBackward: a trainable polynomial activation (Horner) forward in one pass,
 *    and its backward in one pass: dx = dy * p'(x) and dcoeff_k = sum(dy * x^k). tfjs
 *    autodiff of the op-by-op formula runs ~15 kernels (Multiply, Add, Sum of a broadcast,
 *    Cast, Identity copies, Pack/Unpack) over the full activation tensor instead;
 *  - columnSum: sum over all axes but the last ([rows, cols] -> [cols]; bias gradients,
 *    batchnorm statistics): tfjs-backend-wasm transposes the tensor before reducing;
 *  - avgPoolGrad: the gradient of non-overlapping average pooling as a strided copy;
 *  - convFilterGrad: Conv2DBackpropFilter accumulated directly (outer products of input rows
 *    and output gradients per filter tap, accumulators in registers, 4-wide SIMD);
 *    see the comment at convFilterGradFn;
 *  - convInputGrad: Conv2DBackpropInput as a scatter of W_tap dy per output position and tap
 *    (no zero-upsampling for strided convs); see convInputGradFn.
 *
 * The module imports the tfjs wasm backend's own memory, so kernels read and write tensors in
 * place (addresses are the backend's `memoryOffset`s); it is built once per process with the
 * tiny encoder of wasm-asm.ts. Element tails (< 4 elements) are left to the JS wrappers.
 * Sums accumulate 4-lane f32 partial sums over blocks of 1024 elements and add the blocks in
 * f64, so they are at least as accurate as tfjs's sequential f32 reductions.
 */
import {
  type Code,
  F32,
  F64,
  Fn,
  I32,
  T,
  V,
  encodeModule,
  forLoop,
  get,
  i32,
  set,
  when,
} from './wasm-asm.js';
import { winogradFns } from './winograd-kernels.js';

/** Elements per partial-sum block (f32 lanes), then added in f64. */
const BLOCK = 1024;

// ------------------------------------------------------------------------------------------
// polynomial forward
// ------------------------------------------------------------------------------------------

/** quad_fwd(x, out, n4, c0, c1, c2): out = (c2 x + c1) x + c0 over n4 (multiple of 4) elements. */
function quadForwardFn(): Fn {
  const f = new Fn('quad_fwd', [T.i32, T.i32, T.i32, T.f32, T.f32, T.f32]);
  const [x, out, n, c0, c1, c2] = [0, 1, 2, 3, 4, 5];
  const i = f.local(T.i32);
  const v0 = f.local(T.v128);
  const v1 = f.local(T.v128);
  const v2 = f.local(T.v128);
  const xv = f.local(T.v128);
  f.body = [
    set(v0, V.splat(get(c0))),
    set(v1, V.splat(get(c1))),
    set(v2, V.splat(get(c2))),
    forLoop(i, i32(0), I32.shl(get(n), i32(2)), i32(16), [
      set(xv, V.load(I32.add(get(x), get(i)))),
      V.store(I32.add(get(out), get(i)), V.add(V.mul(V.add(V.mul(get(v2), get(xv)), get(v1)), get(xv)), get(v0))),
    ]),
  ];
  return f;
}

/** poly_fwd(x, out, n4, coef, deg): Horner with coefficients (ascending, f32) read from memory. */
function polyForwardFn(): Fn {
  const f = new Fn('poly_fwd', [T.i32, T.i32, T.i32, T.i32, T.i32]);
  const [x, out, n, coef, deg] = [0, 1, 2, 3, 4];
  const i = f.local(T.i32);
  const k = f.local(T.i32);
  const xv = f.local(T.v128);
  const y = f.local(T.v128);
  f.body = forLoop(i, i32(0), I32.shl(get(n), i32(2)), i32(16), [
    set(xv, V.load(I32.add(get(x), get(i)))),
    set(y, V.loadSplat(I32.add(get(coef), I32.shl(get(deg), i32(2))))),
    // for k = deg-1 .. 0: y = y*x + c_k   (counting j = 1..deg, k = deg - j)
    forLoop(k, i32(1), I32.add(get(deg), i32(1)), i32(1), [
      set(y, V.add(V.mul(get(y), get(xv)), V.loadSplat(I32.add(get(coef), I32.shl(I32.sub(get(deg), get(k)), i32(2)))))),
    ]),
    V.store(I32.add(get(out), get(i)), get(y)),
  ]);
  return f;
}

// ------------------------------------------------------------------------------------------
// polynomial backward
// ------------------------------------------------------------------------------------------

/**
 * quad_bwd(x, dy, dx, n4, c1, c2, sums): dx = dy (2 c2 x + c1); f64 sums[0..2] =
 * sum(dy), sum(dy x), sum(dy x^2) over n4 (multiple of 4) elements.
 */
function quadBackwardFn(): Fn {
  const f = new Fn('quad_bwd', [T.i32, T.i32, T.i32, T.i32, T.f32, T.f32, T.i32]);
  const [x, dy, dx, n, c1, c2, sums] = [0, 1, 2, 3, 4, 5, 6];
  const i = f.local(T.i32);
  const blockEnd = f.local(T.i32);
  const end = f.local(T.i32);
  const a = f.local(T.v128);
  const b = f.local(T.v128);
  const xv = f.local(T.v128);
  const g = f.local(T.v128);
  const t = f.local(T.v128);
  const acc = [f.local(T.v128), f.local(T.v128), f.local(T.v128)];
  const tot = [f.local(T.v128), f.local(T.v128), f.local(T.v128)];
  const flush = acc.map((_, k) => [
    set(tot[k], V.d.add(get(tot[k]), V.d.add(V.d.promoteLow(get(acc[k])), V.d.promoteHigh(get(acc[k]))))),
    set(acc[k], V.zero()),
  ]);
  f.body = [
    set(a, V.splat(F32.add(get(c2), get(c2)))),
    set(b, V.splat(get(c1))),
    acc.map((l) => set(l, V.zero())),
    tot.map((l) => set(l, V.zero())),
    set(end, I32.shl(get(n), i32(2))),
    set(i, i32(0)),
    // blocks of BLOCK elements
    forLoop(blockEnd, i32(BLOCK * 4), I32.add(get(end), i32(BLOCK * 4)), i32(BLOCK * 4), [
      forLoop(i, get(i), minI32(get(blockEnd), get(end)), i32(16), [
        set(xv, V.load(I32.add(get(x), get(i)))),
        set(g, V.load(I32.add(get(dy), get(i)))),
        V.store(I32.add(get(dx), get(i)), V.mul(get(g), V.add(V.mul(get(a), get(xv)), get(b)))),
        set(acc[0], V.add(get(acc[0]), get(g))),
        set(t, V.mul(get(g), get(xv))),
        set(acc[1], V.add(get(acc[1]), get(t))),
        set(acc[2], V.add(get(acc[2]), V.mul(get(t), get(xv)))),
      ]),
      flush,
    ]),
    tot.map((l, k) => F64.store(get(sums), F64.add(V.d.lane(get(l), 0), V.d.lane(get(l), 1)), 8 * k)),
  ];
  return f;
}

/**
 * poly_bwd(x, dy, dx, n4, coef, deg, sums, scratch): dx = dy * p'(x); f64 sums[k] =
 * sum(dy x^k), k = 0..deg. scratch: 16*(deg+1) bytes (16-aligned) for the f32x4 partial sums.
 */
function polyBackwardFn(): Fn {
  const f = new Fn('poly_bwd', [T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32]);
  const [x, dy, dx, n, coef, deg, sums, scratch] = [0, 1, 2, 3, 4, 5, 6, 7];
  const i = f.local(T.i32);
  const k = f.local(T.i32);
  const blockEnd = f.local(T.i32);
  const end = f.local(T.i32);
  const xv = f.local(T.v128);
  const g = f.local(T.v128);
  const d = f.local(T.v128);
  const p = f.local(T.v128);
  const s = f.local(T.v128);
  const coefAt = (kk: Code) => F32.load(I32.add(get(coef), I32.shl(kk, i32(2))));
  const accAt = (kk: Code) => I32.add(get(scratch), I32.shl(kk, i32(4)));
  const sumAt = (kk: Code) => I32.add(get(sums), I32.shl(kk, i32(3)));
  f.body = [
    forLoop(k, i32(0), I32.add(get(deg), i32(1)), i32(1), [V.store(accAt(get(k)), V.zero()), F64.store(sumAt(get(k)), [0x44, 0, 0, 0, 0, 0, 0, 0, 0])]),
    set(end, I32.shl(get(n), i32(2))),
    set(i, i32(0)),
    forLoop(blockEnd, i32(BLOCK * 4), I32.add(get(end), i32(BLOCK * 4)), i32(BLOCK * 4), [
      forLoop(i, get(i), minI32(get(blockEnd), get(end)), i32(16), [
        set(xv, V.load(I32.add(get(x), get(i)))),
        set(g, V.load(I32.add(get(dy), get(i)))),
        // p'(x) by Horner: d = deg c_deg; d = d x + k c_k for k = deg-1 .. 1
        set(d, V.splat(F32.mul(F32.fromI32(get(deg)), coefAt(get(deg))))),
        forLoop(k, i32(1), get(deg), i32(1), [
          set(d, V.add(V.mul(get(d), get(xv)), V.splat(F32.mul(F32.fromI32(I32.sub(get(deg), get(k))), coefAt(I32.sub(get(deg), get(k))))))),
        ]),
        V.store(I32.add(get(dx), get(i)), V.mul(get(g), get(d))),
        // acc_k += dy x^k
        set(p, get(g)),
        forLoop(k, i32(0), I32.add(get(deg), i32(1)), i32(1), [
          V.store(accAt(get(k)), V.add(V.load(accAt(get(k))), get(p))),
          set(p, V.mul(get(p), get(xv))),
        ]),
      ]),
      forLoop(k, i32(0), I32.add(get(deg), i32(1)), i32(1), [
        set(s, V.load(accAt(get(k)))),
        set(s, V.d.add(V.d.promoteLow(get(s)), V.d.promoteHigh(get(s)))),
        F64.store(sumAt(get(k)), F64.add(F64.load(sumAt(get(k))), F64.add(V.d.lane(get(s), 0), V.d.lane(get(s), 1)))),
        V.store(accAt(get(k)), V.zero()),
      ]),
    ]),
  ];
  return f;
}

function minI32(a: Code, b: Code): Code {
  // select(a, b, a < b)
  return [a, b, I32.ltS(a, b), 0x1b];
}

// ------------------------------------------------------------------------------------------
// reductions and pooling
// ------------------------------------------------------------------------------------------

/**
 * col_sum(x, out, rows, cols, scale): out[c] = scale * sum_r x[r, c], cols a multiple of 4.
 * Rows are taken in blocks of 64 (the block's cache lines stay in L1 while its columns are
 * summed in f32x4 registers), block sums are added into out.
 */
function colSumFn(): Fn {
  const f = new Fn('col_sum', [T.i32, T.i32, T.i32, T.i32, T.f32]);
  const [x, out, rows, cols, scale] = [0, 1, 2, 3, 4];
  const rowBytes = f.local(T.i32);
  const r0 = f.local(T.i32);
  const r1 = f.local(T.i32);
  const r = f.local(T.i32);
  const c = f.local(T.i32);
  const acc = f.local(T.v128);
  const ROWS = 64;
  f.body = [
    set(rowBytes, I32.shl(get(cols), i32(2))),
    forLoop(c, i32(0), get(rowBytes), i32(16), [V.store(I32.add(get(out), get(c)), V.zero())]),
    forLoop(r0, i32(0), get(rows), i32(ROWS), [
      set(r1, minI32(I32.add(get(r0), i32(ROWS)), get(rows))),
      forLoop(c, i32(0), get(rowBytes), i32(16), [
        set(acc, V.zero()),
        forLoop(r, get(r0), get(r1), i32(1), [set(acc, V.add(get(acc), V.load(I32.add(I32.add(get(x), I32.mul(get(r), get(rowBytes))), get(c)))))]),
        V.store(I32.add(get(out), get(c)), V.add(V.load(I32.add(get(out), get(c))), get(acc))),
      ]),
    ]),
    forLoop(c, i32(0), get(rowBytes), i32(16), [V.store(I32.add(get(out), get(c)), V.mul(V.load(I32.add(get(out), get(c))), V.splat(get(scale))))]),
  ];
  return f;
}

/**
 * Column loops over [rows, C] data (C a multiple of 4) with per-channel parameters: rows in
 * blocks of 64, and per block each column vector accumulated in registers (`colReduce`), or
 * row by row, column vector by column vector (`rowMap`). Used by batch normalization.
 */
function colReduce(name: string, nIn: number, nAcc: number, term: (ins: Code[], param: (k: number) => Code, accs: number[]) => Code[], scaleOut: boolean): Fn {
  // (in_0..in_{nIn-1}, params, out, rows, C, scale): out[k*C + c] = scale * sum_r term_k
  const f = new Fn(name, [...Array(nIn).fill(T.i32), T.i32, T.i32, T.i32, T.i32, T.f32]);
  const ins = Array.from({ length: nIn }, (_, i) => i);
  const [params, out, rows, C, scale] = [nIn, nIn + 1, nIn + 2, nIn + 3, nIn + 4];
  const rowBytes = f.local(T.i32);
  const r0 = f.local(T.i32);
  const r1 = f.local(T.i32);
  const r = f.local(T.i32);
  const c = f.local(T.i32);
  const off = f.local(T.i32);
  const accs = Array.from({ length: nAcc }, () => f.local(T.v128));
  const outAt = (k: number) => I32.add(I32.add(get(out), I32.mul(i32(k), get(rowBytes))), get(c));
  f.body = [
    set(rowBytes, I32.shl(get(C), i32(2))),
    forLoop(c, i32(0), get(rowBytes), i32(16), accs.map((_, k) => V.store(outAt(k), V.zero()))),
    forLoop(r0, i32(0), get(rows), i32(64), [
      set(r1, minI32(I32.add(get(r0), i32(64)), get(rows))),
      forLoop(c, i32(0), get(rowBytes), i32(16), [
        accs.map((a) => set(a, V.zero())),
        forLoop(r, get(r0), get(r1), i32(1), [
          set(off, I32.add(I32.mul(get(r), get(rowBytes)), get(c))),
          term(
            ins.map((i) => V.load(I32.add(get(i), get(off)))),
            (k) => V.load(I32.add(I32.add(get(params), I32.mul(i32(k), get(rowBytes))), get(c))),
            accs,
          ),
        ]),
        accs.map((a, k) => V.store(outAt(k), V.add(V.load(outAt(k)), get(a)))),
      ]),
    ]),
    scaleOut ? forLoop(c, i32(0), I32.mul(get(rowBytes), i32(nAcc)), i32(16), [V.store(I32.add(get(out), get(c)), V.mul(V.load(I32.add(get(out), get(c))), V.splat(get(scale))))]) : [],
  ];
  return f;
}

/** (in_0..in_{nIn-1}, params, out, rows, C): out[r, c] = fn(ins[r, c], params[k*C + c]) */
function rowMap(name: string, nIn: number, fn: (ins: Code[], param: (k: number) => Code) => Code): Fn {
  const f = new Fn(name, [...Array(nIn).fill(T.i32), T.i32, T.i32, T.i32, T.i32]);
  const ins = Array.from({ length: nIn }, (_, i) => i);
  const [params, out, rows, C] = [nIn, nIn + 1, nIn + 2, nIn + 3];
  const rowBytes = f.local(T.i32);
  const end = f.local(T.i32);
  const rowStart = f.local(T.i32);
  const c = f.local(T.i32);
  const off = f.local(T.i32);
  f.body = [
    set(rowBytes, I32.shl(get(C), i32(2))),
    set(end, I32.mul(get(rows), get(rowBytes))),
    forLoop(rowStart, i32(0), get(end), get(rowBytes), [
      forLoop(c, i32(0), get(rowBytes), i32(16), [
        set(off, I32.add(get(rowStart), get(c))),
        V.store(
          I32.add(get(out), get(off)),
          fn(
            ins.map((i) => V.load(I32.add(get(i), get(off)))),
            (k) => V.load(I32.add(I32.add(get(params), I32.mul(i32(k), get(rowBytes))), get(c))),
          ),
        ),
      ]),
    ]),
  ];
  return f;
}

/** Batch normalization over [rows, C]: statistics, forward, and the two backward passes. */
function batchNormFns(): Fn[] {
  return [
    // col_sqdev(x, params=[mean], out, rows, C, scale): scale * sum (x - mean)^2
    colReduce('col_sqdev', 1, 1, ([x], p, [a]) => [set(a, V.add(get(a), V.mul(V.sub(x, p(0)), V.sub(x, p(0)))))], true),
    // bn_apply(x, params=[mean, invStd, gamma, beta], y, rows, C): ((x - mean) invStd) gamma + beta
    rowMap('bn_apply', 1, ([x], p) => V.add(V.mul(V.mul(V.sub(x, p(0)), p(1)), p(2)), p(3))),
    // bn_grad_sums(dy, x, params=[mean, invStd], out, rows, C, _): out = [sum dy, sum dy*xhat]
    colReduce('bn_grad_sums', 2, 2, ([dy, x], p, [a, b]) => [
      set(a, V.add(get(a), dy)),
      set(b, V.add(get(b), V.mul(dy, V.mul(V.sub(x, p(0)), p(1))))),
    ], false),
    // bn_grad_dx(dy, x, params=[mean, invStd, k1, m1, m2], dx, rows, C):
    //   dx = k1 ((dy - m1) - xhat m2),  xhat = (x - mean) invStd
    rowMap('bn_grad_dx', 2, ([dy, x], p) => V.mul(p(2), V.sub(V.sub(dy, p(3)), V.mul(V.mul(V.sub(x, p(0)), p(1)), p(4))))),
  ];
}

/**
 * avgpool_grad(dy, dx, nOH, OW, C, k, H, W, OH, scale): dx[n, oh*k+a, ow*k+b, :] =
 * scale * dy[n, oh, ow, :] for non-overlapping k x k windows (stride k, valid padding),
 * C a multiple of 4; rows/columns that no window covers are left as they are (the wrapper
 * zero-fills them). nOH = N * OH.
 */
function avgPoolGradFn(): Fn {
  const f = new Fn('avgpool_grad', [T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.f32]);
  const [dy, dx, nOH, OW, C, k, H, W, OH, scale] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
  const q = f.local(T.i32); // n*OH + oh
  const a = f.local(T.i32);
  const ow = f.local(T.i32);
  const b = f.local(T.i32);
  const c = f.local(T.i32);
  const cBytes = f.local(T.i32);
  const src = f.local(T.i32);
  const dst = f.local(T.i32);
  const sv = f.local(T.v128);
  f.body = [
    set(cBytes, I32.shl(get(C), i32(2))),
    set(sv, V.splat(get(scale))),
    forLoop(q, i32(0), get(nOH), i32(1), [
      forLoop(a, i32(0), get(k), i32(1), [
        // row index in dx: n*H + oh*k + a, with n = q / OH, oh = q % OH
        set(dst, I32.add(get(dx), I32.mul(I32.mul(I32.add(I32.add(I32.mul(I32.divU(get(q), get(OH)), get(H)), I32.mul(I32.sub(get(q), I32.mul(I32.divU(get(q), get(OH)), get(OH))), get(k))), get(a)), get(W)), get(cBytes)))),
        set(src, I32.add(get(dy), I32.mul(I32.mul(get(q), get(OW)), get(cBytes)))),
        forLoop(ow, i32(0), get(OW), i32(1), [
          forLoop(b, i32(0), get(k), i32(1), [
            forLoop(c, i32(0), get(cBytes), i32(16), [V.store(I32.add(get(dst), get(c)), V.mul(V.load(I32.add(get(src), get(c))), get(sv)))]),
            set(dst, I32.add(get(dst), get(cBytes))),
          ]),
          set(src, I32.add(get(src), get(cBytes))),
        ]),
      ]),
    ]),
  ];
  return f;
}

// ------------------------------------------------------------------------------------------
// Conv2DBackpropFilter
// ------------------------------------------------------------------------------------------

/**
 * conv_filter_grad(x, dy, dw, N, H, W, Ci, OH, OW, Co, KH, KW, sh, sw, pt, owRange, coLo, coHi):
 *   dw[kh,kw,ci,co] += sum_{n,oh,ow} x[n, oh*sh+kh-pt, ow*sw+kw-pl, ci] * dy[n,oh,ow,co]
 * for co in [coLo, coHi) (NHWC, HWIO, dilation 1; dw must be zeroed by the caller; Co, coLo
 * and coHi multiples of 4). Each dw element is summed in the same order whatever the range,
 * so kernel-pool.ts can split the output channels across threads bit-for-bit.
 * owRange: KW pairs of i32 [owLo, owHi) giving the output columns whose input column
 * ow*sw+kw-pl lies inside the image (precomputed by the wrapper: this is the left/right
 * padding); rows outside the image are skipped per (oh, kh).
 *
 * For each output row (n, oh) and tap (kh, kw) the kernel walks the row's OW positions once
 * per block of 2 input channels x 16 output channels, with the 8 f32x4 accumulators of that
 * block in registers: per position 2 broadcast loads of x, 4 loads of dy, 8 mul + 8 add.
 * The row of dy (OW*Co floats) and the KH rows of x stay in L1 across the blocks.
 */
function convFilterGradFn(): Fn {
  const p = Array.from({ length: 18 }, () => T.i32);
  const f = new Fn('conv_filter_grad', p);
  const [x, dy, dw, N, H, W, Ci, OH, OW, Co, KH, KW, sh, sw, pt, owRange, coLo, coHi] = p.map((_, i) => i);
  // allocated in this order (wasm local indices), one i32 each; xRow = &x[n, row, 0, 0], dyRow = &dy[n, oh, 0, 0],
  // xStep = sw * Ci * 4, dyStep = Co * 4
  const [n, oh, kh, kw, row, ci, co, ow, owLo, owHi, xRow, dyRow, xp, dp, wp, xStep, dyStep, ci2End, co16End, coBytes] = i32Locals(f, 20);
  const acc = Array.from({ length: 8 }, () => f.local(T.v128));
  const dv = Array.from({ length: 4 }, () => f.local(T.v128));
  const xa = f.local(T.v128);
  const xb = f.local(T.v128);
  const padLeft = f.local(T.i32);

  /** inner loop for a block of `cis` (1|2) input channels x `cvs` (1|4) vectors of output channels */
  const block = (cis: number, cvs: number): Code => {
    // wp = &dw[kh, kw, ci, co]
    const accs = (j: number, v: number) => acc[j * 4 + v];
    const wAddr = (j: number, v: number): [Code, number] => [I32.add(get(wp), I32.mul(i32(j), get(coBytes))), v * 16];
    const body: Code[] = [];
    for (let j = 0; j < cis; j++) for (let v = 0; v < cvs; v++) body.push(set(accs(j, v), V.load(...wAddr(j, v))));
    body.push(
      set(xp, I32.add(get(xRow), I32.shl(I32.add(I32.mul(I32.sub(I32.add(I32.mul(get(owLo), get(sw)), get(kw)), get(padLeft)), get(Ci)), get(ci)), i32(2)))),
      set(dp, I32.add(I32.add(get(dyRow), I32.mul(get(owLo), get(dyStep))), I32.shl(get(co), i32(2)))),
      forLoop(ow, get(owLo), get(owHi), i32(1), [
        set(xa, V.loadSplat(get(xp))),
        cis > 1 ? set(xb, V.loadSplat(get(xp), 4)) : [],
        Array.from({ length: cvs }, (_, v) => set(dv[v], V.load(get(dp), v * 16))),
        Array.from({ length: cis }, (_, j) =>
          Array.from({ length: cvs }, (_, v) => set(accs(j, v), V.add(get(accs(j, v)), V.mul(get(j === 0 ? xa : xb), get(dv[v]))))),
        ),
        set(xp, I32.add(get(xp), get(xStep))),
        set(dp, I32.add(get(dp), get(dyStep))),
      ]),
    );
    for (let j = 0; j < cis; j++) for (let v = 0; v < cvs; v++) {
      const [addr, off] = wAddr(j, v);
      body.push(V.store(addr, get(accs(j, v)), off));
    }
    return body;
  };

  f.body = [
    set(xStep, I32.shl(I32.mul(get(sw), get(Ci)), i32(2))),
    set(dyStep, I32.shl(get(Co), i32(2))),
    set(coBytes, I32.shl(get(Co), i32(2))),
    set(ci2End, I32.and(get(Ci), i32(-2))),
    set(co16End, I32.add(get(coLo), I32.and(I32.sub(get(coHi), get(coLo)), i32(-16)))),
    // pl is passed as the first i32 of owRange's trailing slot: owRange[2*KW]
    set(padLeft, I32.load(I32.add(get(owRange), I32.shl(get(KW), i32(3))))),
    forLoop(n, i32(0), get(N), i32(1), [
      forLoop(oh, i32(0), get(OH), i32(1), [
        set(dyRow, I32.add(get(dy), I32.mul(I32.mul(I32.add(I32.mul(get(n), get(OH)), get(oh)), get(OW)), get(dyStep)))),
        forLoop(kh, i32(0), get(KH), i32(1), [
          set(row, I32.sub(I32.add(I32.mul(get(oh), get(sh)), get(kh)), get(pt))),
          when(I32.ltU(get(row), get(H)), [
            set(xRow, I32.add(get(x), I32.shl(I32.mul(I32.mul(I32.add(I32.mul(get(n), get(H)), get(row)), get(W)), get(Ci)), i32(2)))),
            forLoop(kw, i32(0), get(KW), i32(1), [
              set(owLo, I32.load(I32.add(get(owRange), I32.shl(get(kw), i32(3))))),
              set(owHi, I32.load(I32.add(get(owRange), I32.shl(get(kw), i32(3))), 4)),
              when(I32.ltS(get(owLo), get(owHi)), [
                // channel pairs
                forLoop(ci, i32(0), get(ci2End), i32(2), [
                  forLoop(co, get(coLo), get(co16End), i32(16), [setWp(), block(2, 4)]),
                  forLoop(co, get(co16End), get(coHi), i32(4), [setWp(), block(2, 1)]),
                ]),
                // odd channel
                when(I32.ltS(get(ci2End), get(Ci)), [
                  set(ci, get(ci2End)),
                  forLoop(co, get(coLo), get(co16End), i32(16), [setWp(), block(1, 4)]),
                  forLoop(co, get(co16End), get(coHi), i32(4), [setWp(), block(1, 1)]),
                ]),
              ]),
            ]),
          ]),
        ]),
      ]),
    ]),
  ];
  function setWp(): Code {
    // wp = &dw[((kh*KW + kw)*Ci + ci)*Co + co]
    return set(wp, I32.add(get(dw), I32.shl(I32.add(I32.mul(I32.add(I32.mul(I32.add(I32.mul(get(kh), get(KW)), get(kw)), get(Ci)), get(ci)), get(Co)), get(co)), i32(2))));
  }
  return f;
}

/** `count` fresh i32 locals of `f`, in order: a kernel with many scalar registers declares them in one line. */
function i32Locals(f: Fn, count: number): number[] {
  return Array.from({ length: count }, () => f.local(T.i32));
}

/**
 * conv_input_grad(dy, wT, dx, N, H, W, Ci, OH, OW, Co, KH, KW, sh, sw, pt, owRange):
 *   dx[n, oh*sh+kh-pt, ow*sw+kw-pl, ci] += sum_co wT[kh,kw,co,ci] * dy[n,oh,ow,co]
 * (NHWC, dilation 1, wT the filter transposed to [KH,KW,Co,Ci], dx zeroed by the caller,
 * Ci a multiple of 4; owRange as for conv_filter_grad). A scatter form of the transposed
 * convolution: every (output position, tap) adds W_tap dy into one input pixel, so a stride
 * s costs no zero-upsampling. Two neighbouring output positions share the weight loads: per
 * output channel 2 broadcast loads of dy, 4 weight vector loads, 8 mul + 8 add into 8 f32x4
 * accumulators (2 positions x 16 input channels), added into dx after the channel loop.
 */
function convInputGradFn(): Fn {
  const p = [T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32];
  const f = new Fn('conv_input_grad', p);
  const [dy, wT, dx, N, H, W, Ci, OH, OW, Co, KH, KW, sh, sw, pt, owRange] = p.map((_, i) => i);
  const n = f.local(T.i32);
  const oh = f.local(T.i32);
  const kh = f.local(T.i32);
  const kw = f.local(T.i32);
  const row = f.local(T.i32);
  const ow = f.local(T.i32);
  const owLo = f.local(T.i32);
  const owHi = f.local(T.i32);
  const owPairEnd = f.local(T.i32);
  const ci = f.local(T.i32);
  const co = f.local(T.i32);
  const dyRow = f.local(T.i32);
  const dxRow = f.local(T.i32);
  const wTap = f.local(T.i32);
  const wp = f.local(T.i32);
  const d0 = f.local(T.i32);
  const xp = f.local(T.i32);
  const ciBytes = f.local(T.i32);
  const coBytes = f.local(T.i32);
  const ci16End = f.local(T.i32);
  const padLeft = f.local(T.i32);
  const acc = Array.from({ length: 8 }, () => f.local(T.v128));
  const a = f.local(T.v128);
  const b = f.local(T.v128);
  const wv = Array.from({ length: 4 }, () => f.local(T.v128));

  /** `pos` (1|2) output positions from ow, `cvs` (1|4) vectors of input channels from ci */
  const block = (pos: number, cvs: number): Code => {
    const accs = (q: number, v: number) => acc[q * 4 + v];
    const body: Code[] = [];
    for (let q = 0; q < pos; q++) for (let v = 0; v < cvs; v++) body.push(set(accs(q, v), V.zero()));
    body.push(
      set(wp, I32.add(get(wTap), I32.shl(get(ci), i32(2)))),
      set(d0, I32.add(get(dyRow), I32.mul(get(ow), get(coBytes)))),
      forLoop(co, i32(0), get(Co), i32(1), [
        set(a, V.loadSplat(get(d0))),
        pos > 1 ? set(b, V.loadSplat(I32.add(get(d0), get(coBytes)))) : [],
        Array.from({ length: cvs }, (_, v) => set(wv[v], V.load(get(wp), v * 16))),
        Array.from({ length: pos }, (_, q) =>
          Array.from({ length: cvs }, (_, v) => set(accs(q, v), V.add(get(accs(q, v)), V.mul(get(q === 0 ? a : b), get(wv[v]))))),
        ),
        set(wp, I32.add(get(wp), get(ciBytes))),
        set(d0, I32.add(get(d0), i32(4))),
      ]),
    );
    for (let q = 0; q < pos; q++) {
      // xp = &dx[n, row, (ow+q)*sw + kw - pl, ci]
      body.push(
        set(xp, I32.add(get(dxRow), I32.shl(I32.add(I32.mul(I32.sub(I32.add(I32.mul(I32.add(get(ow), i32(q)), get(sw)), get(kw)), get(padLeft)), get(Ci)), get(ci)), i32(2)))),
      );
      for (let v = 0; v < cvs; v++) body.push(V.store(get(xp), V.add(V.load(get(xp), v * 16), get(accs(q, v))), v * 16));
    }
    return body;
  };
  const channels = (pos: number): Code => [
    forLoop(ci, i32(0), get(ci16End), i32(16), [block(pos, 4)]),
    forLoop(ci, get(ci16End), get(Ci), i32(4), [block(pos, 1)]),
  ];

  f.body = [
    set(ciBytes, I32.shl(get(Ci), i32(2))),
    set(coBytes, I32.shl(get(Co), i32(2))),
    set(ci16End, I32.and(get(Ci), i32(-16))),
    set(padLeft, I32.load(I32.add(get(owRange), I32.shl(get(KW), i32(3))))),
    forLoop(n, i32(0), get(N), i32(1), [
      forLoop(oh, i32(0), get(OH), i32(1), [
        set(dyRow, I32.add(get(dy), I32.mul(I32.mul(I32.add(I32.mul(get(n), get(OH)), get(oh)), get(OW)), get(coBytes)))),
        forLoop(kh, i32(0), get(KH), i32(1), [
          set(row, I32.sub(I32.add(I32.mul(get(oh), get(sh)), get(kh)), get(pt))),
          when(I32.ltU(get(row), get(H)), [
            set(dxRow, I32.add(get(dx), I32.mul(I32.mul(I32.add(I32.mul(get(n), get(H)), get(row)), get(W)), get(ciBytes)))),
            forLoop(kw, i32(0), get(KW), i32(1), [
              set(owLo, I32.load(I32.add(get(owRange), I32.shl(get(kw), i32(3))))),
              set(owHi, I32.load(I32.add(get(owRange), I32.shl(get(kw), i32(3))), 4)),
              set(wTap, I32.add(get(wT), I32.mul(I32.mul(I32.add(I32.mul(get(kh), get(KW)), get(kw)), get(Co)), get(ciBytes)))),
              set(owPairEnd, I32.sub(get(owHi), I32.and(I32.sub(get(owHi), get(owLo)), i32(1)))),
              forLoop(ow, get(owLo), get(owPairEnd), i32(2), [channels(2)]),
              when(I32.ltS(get(owPairEnd), get(owHi)), [set(ow, get(owPairEnd)), channels(1)]),
            ]),
          ]),
        ]),
      ]),
    ]),
  ];
  return f;
}

/**
 * conv_fwd(x, w, y, N, H, W, Ci, OH, OW, Co, KH, KW, sh, sw, pt, owRange):
 *   y[n,oh,ow,co] += sum_{kh,kw,ci} x[n, oh*sh+kh-pt, ow*sw+kw-pl, ci] * w[kh,kw,ci,co]
 * (NHWC, HWIO, dilation 1, y zeroed by the caller, Co a multiple of 4; owRange as for
 * conv_filter_grad). Per (output row, tap) and pair of output positions, 8 f32x4 accumulators
 * (2 positions x 16 output channels) run over the input channels (2 broadcast loads of x,
 * 4 weight vector loads, 8 mul + 8 add each) and are then added into y.
 */
function convForwardFn(): Fn {
  const p = [T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32, T.i32];
  const f = new Fn('conv_fwd', p);
  const [x, w, y, N, H, W, Ci, OH, OW, Co, KH, KW, sh, sw, pt, owRange] = p.map((_, i) => i);
  const n = f.local(T.i32);
  const oh = f.local(T.i32);
  const kh = f.local(T.i32);
  const kw = f.local(T.i32);
  const row = f.local(T.i32);
  const ow = f.local(T.i32);
  const owLo = f.local(T.i32);
  const owHi = f.local(T.i32);
  const owPairEnd = f.local(T.i32);
  const ci = f.local(T.i32);
  const co = f.local(T.i32);
  const yRow = f.local(T.i32);
  const xRow = f.local(T.i32);
  const wTap = f.local(T.i32);
  const wp = f.local(T.i32);
  const xp = f.local(T.i32);
  const yp = f.local(T.i32);
  const ciBytes = f.local(T.i32);
  const coBytes = f.local(T.i32);
  const xStep = f.local(T.i32);
  const co16End = f.local(T.i32);
  const padLeft = f.local(T.i32);
  const acc = Array.from({ length: 8 }, () => f.local(T.v128));
  const a = f.local(T.v128);
  const b = f.local(T.v128);
  const wv = Array.from({ length: 4 }, () => f.local(T.v128));

  /** `pos` (1|2) output positions from ow, `cvs` (1|4) vectors of output channels from co */
  const block = (pos: number, cvs: number): Code => {
    const accs = (q: number, v: number) => acc[q * 4 + v];
    const body: Code[] = [];
    for (let q = 0; q < pos; q++) for (let v = 0; v < cvs; v++) body.push(set(accs(q, v), V.zero()));
    body.push(
      set(wp, I32.add(get(wTap), I32.shl(get(co), i32(2)))),
      // xp = &x[n, row, ow*sw + kw - pl, 0]
      set(xp, I32.add(get(xRow), I32.mul(I32.sub(I32.add(I32.mul(get(ow), get(sw)), get(kw)), get(padLeft)), get(ciBytes)))),
      forLoop(ci, i32(0), get(Ci), i32(1), [
        set(a, V.loadSplat(get(xp))),
        pos > 1 ? set(b, V.loadSplat(I32.add(get(xp), get(xStep)))) : [],
        Array.from({ length: cvs }, (_, v) => set(wv[v], V.load(get(wp), v * 16))),
        Array.from({ length: pos }, (_, q) =>
          Array.from({ length: cvs }, (_, v) => set(accs(q, v), V.add(get(accs(q, v)), V.mul(get(q === 0 ? a : b), get(wv[v]))))),
        ),
        set(wp, I32.add(get(wp), get(coBytes))),
        set(xp, I32.add(get(xp), i32(4))),
      ]),
    );
    for (let q = 0; q < pos; q++) {
      body.push(set(yp, I32.add(get(yRow), I32.shl(I32.add(I32.mul(I32.add(get(ow), i32(q)), get(Co)), get(co)), i32(2)))));
      for (let v = 0; v < cvs; v++) body.push(V.store(get(yp), V.add(V.load(get(yp), v * 16), get(accs(q, v))), v * 16));
    }
    return body;
  };
  const channels = (pos: number): Code => [
    forLoop(co, i32(0), get(co16End), i32(16), [block(pos, 4)]),
    forLoop(co, get(co16End), get(Co), i32(4), [block(pos, 1)]),
  ];

  f.body = [
    set(ciBytes, I32.shl(get(Ci), i32(2))),
    set(coBytes, I32.shl(get(Co), i32(2))),
    set(xStep, I32.mul(get(sw), get(ciBytes))),
    set(co16End, I32.and(get(Co), i32(-16))),
    set(padLeft, I32.load(I32.add(get(owRange), I32.shl(get(KW), i32(3))))),
    forLoop(n, i32(0), get(N), i32(1), [
      forLoop(oh, i32(0), get(OH), i32(1), [
        set(yRow, I32.add(get(y), I32.mul(I32.mul(I32.add(I32.mul(get(n), get(OH)), get(oh)), get(OW)), get(coBytes)))),
        forLoop(kh, i32(0), get(KH), i32(1), [
          set(row, I32.sub(I32.add(I32.mul(get(oh), get(sh)), get(kh)), get(pt))),
          when(I32.ltU(get(row), get(H)), [
            set(xRow, I32.add(get(x), I32.mul(I32.mul(I32.add(I32.mul(get(n), get(H)), get(row)), get(W)), get(ciBytes)))),
            forLoop(kw, i32(0), get(KW), i32(1), [
              set(owLo, I32.load(I32.add(get(owRange), I32.shl(get(kw), i32(3))))),
              set(owHi, I32.load(I32.add(get(owRange), I32.shl(get(kw), i32(3))), 4)),
              set(wTap, I32.add(get(w), I32.mul(I32.mul(I32.add(I32.mul(get(kh), get(KW)), get(kw)), get(Ci)), get(coBytes)))),
              set(owPairEnd, I32.sub(get(owHi), I32.and(I32.sub(get(owHi), get(owLo)), i32(1)))),
              forLoop(ow, get(owLo), get(owPairEnd), i32(2), [channels(2)]),
              when(I32.ltS(get(owPairEnd), get(owHi)), [set(ow, get(owPairEnd)), channels(1)]),
            ]),
          ]),
        ]),
      ]),
    ]),
  ];
  return f;
}

// ------------------------------------------------------------------------------------------
// instantiation
// ------------------------------------------------------------------------------------------

export interface SimdExports {
  quad_fwd(x: number, out: number, n4: number, c0: number, c1: number, c2: number): void;
  poly_fwd(x: number, out: number, n4: number, coef: number, deg: number): void;
  quad_bwd(x: number, dy: number, dx: number, n4: number, c1: number, c2: number, sums: number): void;
  poly_bwd(x: number, dy: number, dx: number, n4: number, coef: number, deg: number, sums: number, scratch: number): void;
  col_sum(x: number, out: number, rows: number, cols: number, scale: number): void;
  avgpool_grad(dy: number, dx: number, nOH: number, OW: number, C: number, k: number, H: number, W: number, OH: number, scale: number): void;
  conv_filter_grad(...args: number[]): void;
  conv_input_grad(...args: number[]): void;
  conv_fwd(...args: number[]): void;
  col_sqdev(x: number, params: number, out: number, rows: number, C: number, scale: number): void;
  bn_apply(x: number, params: number, y: number, rows: number, C: number): void;
  bn_grad_sums(dy: number, x: number, params: number, out: number, rows: number, C: number, unused: number): void;
  bn_grad_dx(dy: number, x: number, params: number, dx: number, rows: number, C: number): void;
  wino_fwd2(...args: number[]): void;
  wino_dw2(...args: number[]): void;
  wino_fwd4(...args: number[]): void;
  wino_dw4(...args: number[]): void;
  lincomb(...args: number[]): void;
}

/** The compiled module for a memory that is (threaded wasm build) or is not shared. */
export function compileSimdModule(shared: boolean): WebAssembly.Module {
  const bytes = encodeModule([quadForwardFn(), polyForwardFn(), quadBackwardFn(), polyBackwardFn(), colSumFn(), avgPoolGradFn(), convFilterGradFn(), convInputGradFn(), convForwardFn(), ...batchNormFns(), ...winogradFns()], {
    shared,
    maxPages: 65536,
  });
  return new WebAssembly.Module(bytes);
}

export function isSharedMemory(memory: WebAssembly.Memory): boolean {
  return typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer;
}

export function buildSimdModule(memory: WebAssembly.Memory, module = compileSimdModule(isSharedMemory(memory))): SimdExports {
  return new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as SimdExports;
}
