/**
 * WebAssembly SIMD kernels of Winograd's F(m x m, 3x3) convolutions, m = 2 or 4 (winograd.ts
 * drives them): a 3x3 stride-1 convolution computed per m x m output tile as
 * Y = A^T [ U (.) D ] A, where D = B^T d B is the (m+2) x (m+2) input tile transformed and
 * U = G g G^T the filter transformed. The (m+2)^2 element-wise products become as many
 * matrix products over channels: for F(4x4), 36 multiplications per 16 outputs and channel
 * pair where a direct convolution does 144.
 *
 * Tensors are NHWC with C % 4 == 0; SIMD runs over 4 channels. Tiles t = (n TH + ty) TW + tx
 * are processed in blocks of BT: a block's transformed tiles, [planes][BT][C] (xi =
 * (m+2) i + j major), stay in cache between the transform and the products, which is what
 * makes the larger transformed tiles cheap.
 *
 *   wino_fwd{m}  y = conv(x, g) for the samples [nLo, nHi), from u = G g G^T ([planes][Ci][Co]);
 *   wino_dw{m}   du_c = sum over the tiles of chunk c of (B^T d B)^T (A dY A^T), per xi, for
 *                the chunks [cLo, cHi) of `chunk` samples each: fixed chunks, so that any
 *                thread count sums in the same order (winograd.ts adds the chunks);
 *   lincomb      dst_d = sum_s coef[d][s] src_s over vectors (filter transforms, chunk sums).
 */
import { type Code, Fn, I32, T, V, f32, forLoop, get, i32, select, set, when } from './wasm-asm.js';

/**
 * F(m x m, 3x3): output tiles of m x m from input tiles of m + 2, with B^T (input), A^T
 * (output) and G (filter: U = G g G^T, applied in winograd.ts) of Lavin and Gray (2016).
 */
export interface Variant {
  m: 2 | 4;
  BT: number[][];
  AT: number[][];
  G: number[][];
}

export const F2: Variant = {
  m: 2,
  BT: [
    [1, 0, -1, 0],
    [0, 1, 1, 0],
    [0, -1, 1, 0],
    [0, 1, 0, -1],
  ],
  AT: [
    [1, 1, 1, 0],
    [0, 1, -1, -1],
  ],
  G: [
    [1, 0, 0],
    [1 / 2, 1 / 2, 1 / 2],
    [1 / 2, -1 / 2, 1 / 2],
    [0, 0, 1],
  ],
};

export const F4: Variant = {
  m: 4,
  BT: [
    [4, 0, -5, 0, 1, 0],
    [0, -4, -4, 1, 1, 0],
    [0, 4, -4, -1, 1, 0],
    [0, -2, -1, 2, 1, 0],
    [0, 2, -1, -2, 1, 0],
    [0, 4, 0, -5, 0, 1],
  ],
  AT: [
    [1, 1, 1, 1, 1, 0],
    [0, 1, -1, 2, -2, 0],
    [0, 1, 1, 4, 4, 0],
    [0, 1, -1, 8, -8, 1],
  ],
  G: [
    [1 / 4, 0, 0],
    [-1 / 6, -1 / 6, -1 / 6],
    [-1 / 6, 1 / 6, -1 / 6],
    [1 / 24, 1 / 12, 1 / 6],
    [1 / 24, -1 / 12, 1 / 6],
    [0, 0, 1],
  ],
};

const transpose = (m: number[][]) => m[0].map((_, i) => m.map((row) => row[i]));

/** v128 locals holding splats of the constants (other than 0 and +-1) a function multiplies by. */
class Constants {
  private readonly locals = new Map<number, number>();
  constructor(private readonly f: Fn) {}
  get(c: number): number {
    let l = this.locals.get(c);
    if (l === undefined) this.locals.set(c, (l = this.f.local(T.v128)));
    return l;
  }
  /** set them all: at the start of the function, after every get */
  init(): Code {
    return [...this.locals].map(([c, l]) => set(l, V.splat(f32(c))));
  }
}

/** sum of coef * term, at least one coefficient non-zero */
function combine(k: Constants, coefs: number[], terms: Code[]): Code {
  const used = coefs.map((c, i) => [c, terms[i]] as const).filter(([c]) => c !== 0);
  used.sort((p, q) => q[0] - p[0]); // a positive term first, when there is one
  const scaled = (c: number, t: Code) => (Math.abs(c) === 1 ? t : V.mul(get(k.get(Math.abs(c))), t));
  let expr: Code = used[0][0] > 0 ? scaled(used[0][0], used[0][1]) : V.neg(scaled(used[0][0], used[0][1]));
  for (const [c, t] of used.slice(1)) expr = c > 0 ? V.add(expr, scaled(c, t)) : V.sub(expr, scaled(c, t));
  return expr;
}

/** out = L X R^T for a grid of v128 locals X; L, R as coefficient rows. */
function transform(f: Fn, k: Constants, L: number[][], R: number[][], x: number[][], store: (i: number, l: number, v: Code) => Code): Code {
  const e = x[0].map(() => f.local(T.v128));
  const code: Code[] = [];
  for (let i = 0; i < L.length; i++) {
    x[0].forEach((_, j) => code.push(set(e[j], combine(k, L[i], x.map((row) => get(row[j]))))));
    for (let l = 0; l < R.length; l++) code.push(store(i, l, combine(k, R[l], e.map((v) => get(v)))));
  }
  return code;
}

const locals = (f: Fn, count: number, t: T = T.i32) => Array.from({ length: count }, () => f.local(t));

/** The sizes and pointers every kernel here reads: parameters or locals of its Fn. */
interface Ctx {
  f: Fn;
  k: Constants;
  m: number;
  n: number;
  ty: number;
  tx: number;
  TH: number;
  TW: number;
}

/** the next tile: tx, then ty, then n */
function advance(c: Ctx): Code {
  const { n, ty, tx, TH, TW } = c;
  return [
    set(tx, I32.add(get(tx), i32(1))),
    when(I32.eq(get(tx), get(TW)), [
      set(tx, i32(0)),
      set(ty, I32.add(get(ty), i32(1))),
      when(I32.eq(get(ty), get(TH)), [set(ty, i32(0)), set(n, I32.add(get(n), i32(1)))]),
    ]),
  ];
}

/** Addresses of the rows x cols window at (m ty - pt, m tx - pl) of NHWC `img`, or `fallback` outside H x W. */
function windowAt(c: Ctx, rows: number, cols: number, img: number, H: number, W: number, cBytes: number, pt: number | null, pl: number | null, fallback: number): { at: number[][]; code: Code } {
  const { f, n, ty, tx, m } = c;
  const [r0, c0] = locals(f, 2);
  const at = Array.from({ length: rows }, () => locals(f, cols));
  const code: Code[] = [
    set(r0, pt === null ? I32.mul(get(ty), i32(m)) : I32.sub(I32.mul(get(ty), i32(m)), get(pt))),
    set(c0, pl === null ? I32.mul(get(tx), i32(m)) : I32.sub(I32.mul(get(tx), i32(m)), get(pl))),
  ];
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) {
      const r = I32.add(get(r0), i32(i));
      const col = I32.add(get(c0), i32(j));
      const inside = I32.and(I32.ltU(r, get(H)), I32.ltU(col, get(W)));
      const addr = I32.add(get(img), I32.mul(I32.add(I32.mul(I32.add(I32.mul(get(n), get(H)), r), get(W)), col), get(cBytes)));
      code.push(set(at[i][j], select(inside, addr, get(fallback))));
    }
  return { at, code };
}

/** byte offsets xi * stride of the `planes` xi planes of a block */
function planeOffsets(f: Fn, stride: number, planes: number): { offs: number[]; code: Code } {
  const offs = locals(f, planes);
  return { offs, code: offs.map((o, xi) => set(o, I32.mul(i32(xi), get(stride)))) };
}

/**
 * One tile transformed: `rows x cols` source vectors per 4 channels (loaded from `src`),
 * L X R^T stored to the 16 (or 4) destinations `dst`; channels [0, cBytes) in steps of 16.
 */
function tileChannels(ctx: Ctx, cBytes: number, L: number[][], R: number[][], load: (i: number, j: number, c: number) => Code, store: (i: number, l: number, c: number, v: Code) => Code): Code {
  const { f, k } = ctx;
  const c = f.local(T.i32);
  const x = L[0].map(() => locals(f, R[0].length, T.v128));
  return forLoop(c, i32(0), get(cBytes), i32(16), [x.map((row, i) => row.map((l, j) => set(l, load(i, j, c)))), transform(f, k, L, R, x, (i, l, v) => store(i, l, c, v))]);
}

interface Gemm {
  /** base pointers (bytes) of A_0, B_0, C_0 and the plane strides between xi */
  a: number;
  b: number;
  c: number;
  planeA: number;
  planeB: number;
  planeC: number;
  /** byte strides: A row i, A step k, B step k, C row i */
  rowA: number;
  stepA: number;
  stepB: number;
  rowC: number;
  M: number;
  K: number;
  N: number;
  /** C += A B (dW), else C = A B */
  accumulate: boolean;
  planes: number;
}

/** for every plane xi: C_xi (=|+=) A_xi B_xi, register blocks of 2 rows x 16 columns */
function gemmPlanes(f: Fn, g: Gemm): Code {
  const [xi, aXi, bXi, cXi, i, j, k, pa, pb, pc, mPairs, n16, nBytes] = locals(f, 13);
  const acc = locals(f, 8, T.v128);
  const wv = locals(f, 4, T.v128);
  const [s0, s1] = locals(f, 2, T.v128);
  const block = (rows: number, cvs: number): Code => {
    const ac = (q: number, v: number) => acc[q * 4 + v];
    const cAt = (q: number) => (q === 0 ? get(pc) : I32.add(get(pc), get(g.rowC)));
    const all = (fn: (q: number, v: number) => Code) => Array.from({ length: rows }, (_, q) => Array.from({ length: cvs }, (_, v) => fn(q, v)));
    return [
      set(pc, I32.add(I32.add(get(cXi), I32.mul(get(i), get(g.rowC))), get(j))),
      g.accumulate ? all((q, v) => set(ac(q, v), V.load(cAt(q), v * 16))) : all((q, v) => set(ac(q, v), V.zero())),
      set(pa, I32.add(get(aXi), I32.mul(get(i), get(g.rowA)))),
      set(pb, I32.add(get(bXi), get(j))),
      forLoop(k, i32(0), get(g.K), i32(1), [
        set(s0, V.loadSplat(get(pa))),
        rows > 1 ? set(s1, V.loadSplat(I32.add(get(pa), get(g.rowA)))) : [],
        Array.from({ length: cvs }, (_, v) => set(wv[v], V.load(get(pb), v * 16))),
        all((q, v) => set(ac(q, v), V.add(get(ac(q, v)), V.mul(get(q === 0 ? s0 : s1), get(wv[v]))))),
        set(pa, I32.add(get(pa), get(g.stepA))),
        set(pb, I32.add(get(pb), get(g.stepB))),
      ]),
      all((q, v) => V.store(cAt(q), get(ac(q, v)), v * 16)),
    ];
  };
  const columns = (rows: number): Code => [forLoop(j, i32(0), get(n16), i32(64), [block(rows, 4)]), forLoop(j, get(n16), get(nBytes), i32(16), [block(rows, 1)])];
  return [
    set(mPairs, I32.and(get(g.M), i32(-2))),
    set(nBytes, I32.shl(get(g.N), i32(2))),
    set(n16, I32.shl(I32.and(get(g.N), i32(-16)), i32(2))),
    forLoop(xi, i32(0), i32(g.planes), i32(1), [
      set(aXi, I32.add(get(g.a), I32.mul(get(xi), get(g.planeA)))),
      set(bXi, I32.add(get(g.b), I32.mul(get(xi), get(g.planeB)))),
      set(cXi, I32.add(get(g.c), I32.mul(get(xi), get(g.planeC)))),
      forLoop(i, i32(0), get(mPairs), i32(2), columns(2)),
      when(I32.ltS(get(mPairs), get(g.M)), [set(i, get(mPairs)), columns(1)]),
    ]),
  ];
}

/**
 * Blocks of at most BT tiles of the tiles [t0, t1), each handed to `body` with `count`
 * set to its size and the cursor (n, ty, tx) at its first tile.
 */
function blocks(c: Ctx, t0: number, t1: number, BT: number, count: number, body: Code): Code {
  const { f, n, ty, tx, TH, TW } = c;
  const [t, perSample] = locals(f, 2);
  return [
    set(perSample, I32.mul(get(TH), get(TW))),
    forLoop(t, get(t0), get(t1), get(BT), [
      set(count, select(I32.ltS(I32.add(get(t), get(BT)), get(t1)), get(BT), I32.sub(get(t1), get(t)))),
      set(n, I32.divU(get(t), get(perSample))),
      set(ty, I32.divU(I32.sub(get(t), I32.mul(get(n), get(perSample))), get(TW))),
      set(tx, I32.sub(I32.sub(get(t), I32.mul(get(n), get(perSample))), I32.mul(get(ty), get(TW)))),
      body,
    ]),
  ];
}

/** `body` once per tile of the block, (n, ty, tx) and the block-local tile `tl` advancing */
function perTile(c: Ctx, count: number, tl: number, body: Code): Code {
  return forLoop(tl, i32(0), get(count), i32(1), [body, advance(c)]);
}

/** The byte sizes both kernels start from: channel rows, block planes, filter planes. */
function strides(l: Record<'four' | 'Ci' | 'Co' | 'ciB' | 'coB' | 'BT' | 'planeV' | 'planeM' | 'planeU', number>): Code {
  return [
    set(l.four, i32(4)),
    set(l.ciB, I32.shl(get(l.Ci), i32(2))),
    set(l.coB, I32.shl(get(l.Co), i32(2))),
    set(l.planeV, I32.mul(get(l.BT), get(l.ciB))),
    set(l.planeM, I32.mul(get(l.BT), get(l.coB))),
    set(l.planeU, I32.mul(get(l.Ci), get(l.coB))),
  ];
}

/** The input tile transform of wino_fwd and wino_dw: x's window at tile (n, ty, tx) into block slot tl. */
function inputTile(c: Ctx, v: Variant, x: number, H: number, W: number, ciB: number, pt: number, pl: number, zeros: number, sv: number, tl: number, planeV: number): { setup: Code; tile: Code } {
  const { f } = c;
  const a = v.m + 2;
  const win = windowAt(c, a, a, x, H, W, ciB, pt, pl, zeros);
  const off = planeOffsets(f, planeV, a * a);
  const dst = f.local(T.i32);
  const tile = [
    win.code,
    set(dst, I32.add(get(sv), I32.mul(get(tl), get(ciB)))),
    tileChannels(c, ciB, v.BT, v.BT, (i, j, ch) => V.load(I32.add(get(win.at[i][j]), get(ch))), (i, l, ch, val) => V.store(I32.add(I32.add(get(dst), get(ch)), get(off.offs[i * a + l])), val)),
  ];
  return { setup: off.code, tile };
}

/** wino_fwd{m}(x, u, y, nLo, nHi, H, W, Ci, OH, OW, Co, TH, TW, pt, pl, zeros, sink, sv, sm, BT) */
function winoForwardFn(v: Variant): Fn {
  const f = new Fn(`wino_fwd${v.m}`, Array(20).fill(T.i32));
  const [x, u, y, nLo, nHi, H, W, Ci, OH, OW, Co, TH, TW, pt, pl, zeros, sink, sv, sm, BT] = Array.from({ length: 20 }, (_, i) => i);
  const [n, ty, tx, tl, count, t0, t1, ciB, coB, planeV, planeM, planeU, saveN, saveTy, saveTx, dst, four] = locals(f, 17);
  const a = v.m + 2;
  const c: Ctx = { f, k: new Constants(f), m: v.m, n, ty, tx, TH, TW };
  const input = inputTile(c, v, x, H, W, ciB, pt, pl, zeros, sv, tl, planeV);
  const outWin = windowAt(c, v.m, v.m, y, OH, OW, coB, null, null, sink);
  const offM = planeOffsets(f, planeM, a * a);
  const outTile = [
    outWin.code,
    set(dst, I32.add(get(sm), I32.mul(get(tl), get(coB)))),
    tileChannels(c, coB, v.AT, v.AT, (i, j, ch) => V.load(I32.add(I32.add(get(dst), get(ch)), get(offM.offs[i * a + j]))), (p, q, ch, val) => V.store(I32.add(get(outWin.at[p][q]), get(ch)), val)),
  ];
  const product = gemmPlanes(f, { a: sv, b: u, c: sm, planeA: planeV, planeB: planeU, planeC: planeM, rowA: ciB, stepA: four, stepB: coB, rowC: coB, M: count, K: Ci, N: Co, accumulate: false, planes: a * a });
  f.body = [
    c.k.init(),
    strides({ four, Ci, Co, ciB, coB, BT, planeV, planeM, planeU }),
    input.setup,
    offM.code,
    set(t0, I32.mul(I32.mul(get(nLo), get(TH)), get(TW))),
    set(t1, I32.mul(I32.mul(get(nHi), get(TH)), get(TW))),
    blocks(c, t0, t1, BT, count, [
      set(saveN, get(n)),
      set(saveTy, get(ty)),
      set(saveTx, get(tx)),
      perTile(c, count, tl, input.tile),
      product,
      set(n, get(saveN)),
      set(ty, get(saveTy)),
      set(tx, get(saveTx)),
      perTile(c, count, tl, outTile),
    ]),
  ];
  return f;
}

/** wino_dw{m}(x, dy, du, cLo, cHi, chunk, N, H, W, Ci, OH, OW, Co, TH, TW, pt, pl, zeros, sv, sm, BT) */
function winoFilterGradFn(v: Variant): Fn {
  const f = new Fn(`wino_dw${v.m}`, Array(21).fill(T.i32));
  const [x, dy, du, cLo, cHi, chunk, N, H, W, Ci, OH, OW, Co, TH, TW, pt, pl, zeros, sv, sm, BT] = Array.from({ length: 21 }, (_, i) => i);
  const [n, ty, tx, tl, count, t0, t1, ciB, coB, planeV, planeM, planeU, ch, duC, nEnd, z, four, dst] = locals(f, 18);
  const a = v.m + 2;
  const A = transpose(v.AT);
  const c: Ctx = { f, k: new Constants(f), m: v.m, n, ty, tx, TH, TW };
  const input = inputTile(c, v, x, H, W, ciB, pt, pl, zeros, sv, tl, planeV);
  const dyWin = windowAt(c, v.m, v.m, dy, OH, OW, coB, null, null, zeros);
  const offM = planeOffsets(f, planeM, a * a);
  const dyTile = [
    dyWin.code,
    set(dst, I32.add(get(sm), I32.mul(get(tl), get(coB)))),
    tileChannels(c, coB, A, A, (p, q, cc) => V.load(I32.add(get(dyWin.at[p][q]), get(cc))), (i, j, cc, val) => V.store(I32.add(I32.add(get(dst), get(cc)), get(offM.offs[i * a + j])), val)),
  ];
  const product = gemmPlanes(f, { a: sv, b: sm, c: duC, planeA: planeV, planeB: planeM, planeC: planeU, rowA: four, stepA: ciB, stepB: coB, rowC: coB, M: Ci, K: count, N: Co, accumulate: true, planes: a * a });
  f.body = [
    c.k.init(),
    strides({ four, Ci, Co, ciB, coB, BT, planeV, planeM, planeU }),
    input.setup,
    offM.code,
    forLoop(ch, get(cLo), get(cHi), i32(1), [
      set(duC, I32.add(get(du), I32.mul(I32.mul(get(ch), i32(a * a)), get(planeU)))),
      forLoop(z, i32(0), I32.mul(i32(a * a), get(planeU)), i32(16), [V.store(I32.add(get(duC), get(z)), V.zero())]),
      set(nEnd, I32.mul(I32.add(get(ch), i32(1)), get(chunk))),
      set(t0, I32.mul(I32.mul(I32.mul(get(ch), get(chunk)), get(TH)), get(TW))),
      set(t1, I32.mul(I32.mul(select(I32.ltS(get(nEnd), get(N)), get(nEnd), get(N)), get(TH)), get(TW))),
      blocks(c, t0, t1, BT, count, [perTile(c, count, tl, [input.tile, dyTile]), product]),
    ]),
  ];
  return f;
}

/**
 * lincomb(src, srcStride, nSrc, dst, dstStride, nDst, coef, lo, hi): for d < nDst,
 * dst_d[e] = sum over s < nSrc of coef[d nSrc + s] * src_s[e] for e in [lo, hi) (multiples
 * of 4), where X_i = x + i xStride (strides in floats) and coef is f32: the filter
 * transforms and dW's sum over chunks, split by element range over threads.
 */
function lincombFn(): Fn {
  const f = new Fn('lincomb', Array(9).fill(T.i32));
  const [src, srcStride, nSrc, dst, dstStride, nDst, coef, lo, hi] = Array.from({ length: 9 }, (_, i) => i);
  const [d, sIdx, e, ps, pc, eEnd] = locals(f, 6);
  const acc = f.local(T.v128);
  f.body = [
    set(eEnd, I32.shl(get(hi), i32(2))),
    forLoop(d, i32(0), get(nDst), i32(1), [
      forLoop(e, I32.shl(get(lo), i32(2)), get(eEnd), i32(16), [
        set(acc, V.zero()),
        set(ps, I32.add(get(src), get(e))),
        set(pc, I32.add(get(coef), I32.shl(I32.mul(get(d), get(nSrc)), i32(2)))),
        forLoop(sIdx, i32(0), get(nSrc), i32(1), [
          set(acc, V.add(get(acc), V.mul(V.loadSplat(get(pc)), V.load(get(ps))))),
          set(ps, I32.add(get(ps), I32.shl(get(srcStride), i32(2)))),
          set(pc, I32.add(get(pc), i32(4))),
        ]),
        V.store(I32.add(I32.add(get(dst), I32.shl(I32.mul(get(d), get(dstStride)), i32(2))), get(e)), get(acc)),
      ]),
    ]),
  ];
  return f;
}

export function winogradFns(): Fn[] {
  return [...[F2, F4].flatMap((v) => [winoForwardFn(v), winoFilterGradFn(v)]), lincombFn()];
}
