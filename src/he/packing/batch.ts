import type { CkksBackend } from '../backend.js';
import type { HeProgram, Step, StructOp, TokenBias, WeightedOp } from '../program.js';
import { stepSources } from '../program.js';
import { orderByInput, structEntries, weightedEntries } from '../linear-map.js';
import { convInputPixel, size } from '../tensor-ops.js';
import { runDot } from './batch-dot.js';
import { openScalarSums } from '../scalar-sums.js';

/**
 * Batch packing (CryptoNets): slot s of every ciphertext belongs to sample s, and each tensor
 * element is its own ciphertext. Linear layers are sums of ciphertext * scalar weight, no
 * rotations at all; one pass serves up to N/2 samples, so throughput is high and latency is
 * the whole pass.
 *
 * Memory: a convolution's full output (28x28x32 ciphertexts for fmnist-cnn) would not fit, so
 * the program is cut into *stages*: a step plus the element-wise steps after it (square, sum
 * pooling, flatten) that only mix elements of the same channel. A stage runs one group of
 * output channels at a time (conv -> square -> pool for channel c), keeps only the tensors
 * later stages read, and frees the rest; worker threads take different channel groups.
 */

export interface Stage {
  /** indices into program.steps */
  steps: number[];
  /** channel count of the stage's tensors (element i belongs to channel i % channels) */
  channels: number;
  /** tensors produced here that later stages (or the caller) read */
  exports: number[];
}

/** Splits the program into stages (see above). */
export function planStages(p: HeProgram, keepAll = false): Stage[] {
  const stages: Stage[] = [];
  const producedIn = new Map<number, number>();
  let cur: Stage | null = null;
  // a client refresh happens between two stages: a stage never runs across one
  const refreshBefore = new Set((p.refreshes ?? []).map((r) => r.before));
  const lastDim = (t: number) => {
    const s = p.tensors[t].shape;
    return s[s.length - 1];
  };
  p.steps.forEach((s, idx) => {
    let joins = false;
    // a dot step, a gather or a rotation reads elements of other channels: it starts a stage of its own
    if (cur && s.kind !== 'linear' && s.kind !== 'dot' && !(s.kind === 'struct' && (s.op.kind === 'gather' || s.op.kind === 'rotate'))) {
      const C = cur.channels;
      const srcs = stepSources(s);
      const outOk = s.kind === 'struct' && s.op.kind === 'flatten' ? size(p.tensors[s.out].shape) % C === 0 : lastDim(s.out) === C;
      joins = outOk && srcs.every((t) => size(p.tensors[t].shape) % C === 0 && (lastDim(t) === C || producedIn.get(t) === stages.length - 1));
    }
    if (!joins || refreshBefore.has(idx)) {
      cur = { steps: [], channels: lastDim(s.out), exports: [] };
      stages.push(cur);
    }
    cur!.steps.push(idx);
    producedIn.set(s.out, stages.length - 1);
  });
  // a stage exports what a later stage reads, plus the program output
  stages.forEach((st, k) => {
    const mine = new Set(st.steps.map((i) => p.steps[i].out));
    const needed = new Set<number>();
    for (let j = k + 1; j < stages.length; j++) for (const i of stages[j].steps) for (const t of stepSources(p.steps[i])) if (mine.has(t)) needed.add(t);
    if (mine.has(p.output)) needed.add(p.output);
    for (const r of p.refreshes ?? []) for (const { src } of r.tensors) if (mine.has(src)) needed.add(src);
    if (keepAll) for (const t of mine) needed.add(t);
    st.exports = [...needed];
  });
  return stages;
}

/** Where stage inputs come from and exports go: live objects, or bytes in worker threads. */
export interface TensorStore<C> {
  /** a ciphertext to read (do not modify it); null is a known zero */
  acquire(t: number, i: number): C | null;
  /** done reading what `acquire` returned */
  release(c: C): void;
}

export interface BatchContext<C> {
  program: HeProgram;
  be: CkksBackend<C>;
  store: TensorStore<C>;
  /** bytes of intermediate ciphertexts a stage group may hold (Winograd tiles) */
  memoryBudget?: number;
}

export function levelOfTensor(p: HeProgram, top: number, t: number): number {
  return top - p.tensors[t].depth;
}

/** Bytes of one size-2 ciphertext at a level (for sizing channel groups). */
export function ciphertextBytes(N: number, level: number): number {
  return 2 * N * (level + 1) * 8;
}

/**
 * Channel groups for a stage so that the accumulators of its first step fit `budget` bytes.
 */
export function channelGroups(p: HeProgram, st: Stage, top: number, N: number, budget: number, parts = 1): number[][] {
  const first = p.steps[st.steps[0]];
  const perChannel = size(p.tensors[first.out].shape) / st.channels;
  const level = Math.max(0, levelOfTensor(p, top, first.out) + 1);
  // Winograd keeps 16 products per 2x2 output tile: 4x the outputs
  const winograd = first.kind === 'linear' && first.terms.some((t) => t.op.kind === 'conv' && isWinograd(t.op));
  const bytes = perChannel * ciphertextBytes(N, level) * (winograd ? 4.5 : 1.5);
  let g = Math.max(1, Math.floor(budget / bytes));
  // enough groups that every worker has work
  g = Math.min(g, Math.max(1, Math.ceil(st.channels / parts)));
  const groups: number[][] = [];
  for (let c = 0; c < st.channels; c += g) groups.push(Array.from({ length: Math.min(g, st.channels - c) }, (_, k) => c + k));
  return groups;
}

type Local<C> = Map<number, Map<number, C | null>>;

/**
 * Runs one stage for one group of channels; returns the group's elements of the exported
 * tensors (owned by the caller).
 */
export function runStageGroup<C>(ctx: BatchContext<C>, st: Stage, group: number[]): Map<number, Map<number, C | null>> {
  const { program: p, be } = ctx;
  const C = st.channels;
  const inGroup = new Set(group);
  const keep = (o: number) => inGroup.has(o % C);
  const local: Local<C> = new Map();
  const inStage = new Set(st.steps.map((i) => p.steps[i].out));
  // last in-stage use, to free intermediates early
  const lastUse = new Map<number, number>();
  st.steps.forEach((i, k) => stepSources(p.steps[i]).forEach((t) => lastUse.set(t, k)));
  const exported = new Set(st.exports);

  const read = (t: number, i: number): { c: C | null; release: () => void } => {
    if (inStage.has(t)) {
      const m = local.get(t);
      if (!m) throw new Error(`internal: tensor ${t} not computed yet`);
      return { c: m.get(i) ?? null, release: () => {} };
    }
    const c = ctx.store.acquire(t, i);
    return { c, release: () => c !== null && ctx.store.release(c) };
  };

  st.steps.forEach((stepIdx, k) => {
    const s = p.steps[stepIdx];
    const out = new Map<number, C | null>();
    local.set(s.out, out);
    if (s.kind === 'linear') runLinear(ctx, s, keep, out, read);
    else if (s.kind === 'power') runPower(ctx, s, keep, out, read);
    else if (s.kind === 'dot') runDot(ctx, s, keep, out, read);
    else runStruct(ctx, s, keep, out, read);
    for (const [t, last] of lastUse) {
      if (last === k && inStage.has(t) && !exported.has(t)) {
        for (const c of local.get(t)!.values()) if (c) be.free(c);
        local.delete(t);
      }
    }
  });
  const result = new Map<number, Map<number, C | null>>();
  for (const [t, m] of local) {
    if (exported.has(t)) result.set(t, m);
    else for (const c of m.values()) if (c) be.free(c);
  }
  return result;
}

type Reader<C> = (t: number, i: number) => { c: C | null; release: () => void };

function elementsOf(n: number, keep: (o: number) => boolean): number[] {
  const r: number[] = [];
  for (let i = 0; i < n; i++) if (keep(i)) r.push(i);
  return r;
}

type Biased = { bias: Float64Array | null } & TokenBias;

/** Output o's constant in every slot: one value, or one per token block (token packing); null when zero. */
function biasVector(p: HeProgram, s: Biased, o: number, slots: number): Float64Array | null {
  if (s.tokenBias) {
    const { tokens: T, blocks: B } = p.tokenBlocks ?? { tokens: 1, blocks: 1 };
    const per = slots / B;
    const v = new Float64Array(slots);
    for (let b = 0; b < B; b++) v.fill(s.tokenBias[o * T + (b % T)], b * per, (b + 1) * per);
    return v;
  }
  const b = s.bias ? s.bias[o] : 0;
  return b === 0 ? null : new Float64Array(slots).fill(b);
}

/** Adds output o's constant to `acc`, at its scale. */
export function addBias<C>(be: CkksBackend<C>, p: HeProgram, s: Biased, o: number, acc: C): void {
  if (s.tokenBias) {
    be.addVecInPlace(acc, biasVector(p, s, o, be.slots)!);
    return;
  }
  const b = s.bias ? s.bias[o] : 0;
  if (b !== 0) be.addConstInPlace(acc, b);
}

/** A constant tensor element: encrypted with the public key (only for outputs no input reaches). */
export function constant<C>(be: CkksBackend<C>, p: HeProgram, s: Biased, o: number, scale: number, level: number): C | null {
  const v = biasVector(p, s, o, be.slots);
  return v ? be.encryptVec(v, scale, level) : null;
}

function runLinear<C>(ctx: BatchContext<C>, s: Extract<Step, { kind: 'linear' }>, keep: (o: number) => boolean, out: Map<number, C | null>, read: Reader<C>): void {
  const { program: p, be } = ctx;
  const levelIn = levelOfTensor(p, be.topLevel, s.out) + 1;
  // every term's products land on scale*q so their sum rescales back to exactly `scale`
  const target = be.scale * be.prime(levelIn);
  const acc = new Map<number, C>();
  const sums = openScalarSums(be, levelIn);
  for (const term of s.terms) {
    if (term.op.kind === 'conv' && isWinograd(term.op)) {
      winogradConvTerm(ctx, term.src, term.op, keep, levelIn, target, acc, read);
      continue;
    }
    const e = weightedEntries(term.op, keep);
    if (!e.length) continue;
    const nIn = size(p.tensors[term.src].shape);
    const order = orderByInput(e, nIn);
    let k = 0;
    while (k < order.length) {
      const i = e.inp[order[k]];
      const { c: x, release } = read(term.src, i);
      for (; k < order.length && e.inp[order[k]] === i; k++) {
        const j = order[k];
        if (x) sums.add(e.out[j], x, e.w[j], target / be.scaleOf(x), `${term.src}:${i}`);
      }
      release();
    }
  }
  for (const [o, c] of sums.finish()) {
    const a = acc.get(o);
    if (!a) acc.set(o, c);
    else {
      be.addInPlace(a, c);
      be.free(c);
    }
  }
  const levelOut = levelIn - 1;
  for (const o of elementsOf(size(p.tensors[s.out].shape), keep)) {
    const a = acc.get(o);
    if (!a) {
      out.set(o, constant(be, p, s, o, be.scale, levelOut));
      continue;
    }
    addBias(be, p, s, o, a);
    be.rescaleInPlace(a);
    out.set(o, a);
  }
}

/**
 * 3x3 stride-1 convolutions with enough output channels to amortize the input transform go
 * through Winograd F(2x2, 3x3).
 */
export function isWinograd(op: Extract<WeightedOp, { kind: 'conv' }>): boolean {
  return op.geom.kernel === 3 && op.geom.stride === 1 && op.geom.cout >= 4;
}

// Winograd F(2x2, 3x3) (Lavin & Gray 2016): Y = A^T [(G g G^T) . (B^T d B)] A. The input and
// output transforms only add and subtract ciphertexts (no level); the products drop from 36
// to 16 per 2x2 output tile and input channel, so batch convolutions cost 2.25x fewer
// ciphertext-plaintext multiplications.
const BT = [
  [1, 0, -1, 0],
  [0, 1, 1, 0],
  [0, -1, 1, 0],
  [0, 1, 0, -1],
];
const GW = [
  [1, 0, 0],
  [0.5, 0.5, 0.5],
  [0.5, -0.5, 0.5],
  [0, 0, 1],
];
const AT = [
  [1, 1, 1, 0],
  [0, 1, -1, -1],
];

/** sum_k coef[k] * xs[k] as a new ciphertext (null if every term is zero or null). */
function combine<C>(be: CkksBackend<C>, coef: number[], xs: (C | null)[]): C | null {
  let out: C | null = null;
  for (let k = 0; k < coef.length; k++) {
    const x = xs[k];
    if (!coef[k] || !x) continue;
    if (!out) {
      out = be.clone(x);
      if (coef[k] < 0) be.negateInPlace(out);
    } else if (coef[k] > 0) be.addInPlace(out, x);
    else be.subInPlace(out, x);
  }
  return out;
}

/** U = G g G^T for one (ci, co) kernel slice, row-major 4x4. */
function kernelTransform(kernel: Float64Array, cin: number, cout: number, ci: number, co: number): Float64Array {
  const g = (y: number, x: number) => kernel[((y * 3 + x) * cin + ci) * cout + co];
  const t = [0, 1, 2, 3].map((i) => [0, 1, 2].map((x) => GW[i][0] * g(0, x) + GW[i][1] * g(1, x) + GW[i][2] * g(2, x)));
  const u = new Float64Array(16);
  for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) u[i * 4 + j] = t[i][0] * GW[j][0] + t[i][1] * GW[j][1] + t[i][2] * GW[j][2];
  return u;
}

function winogradConvTerm<C>(
  ctx: BatchContext<C>,
  src: number,
  op: Extract<WeightedOp, { kind: 'conv' }>,
  keep: (o: number) => boolean,
  levelIn: number,
  target: number,
  acc: Map<number, C>,
  read: Reader<C>,
): void {
  const { be } = ctx;
  const { cin, cout, outH, outW } = op.geom;
  const cos: number[] = [];
  for (let co = 0; co < cout; co++) if (keep(co)) cos.push(co);
  const tilesY = Math.ceil(outH / 2);
  const tilesX = Math.ceil(outW / 2);
  const tiles: [number, number][] = [];
  for (let ty = 0; ty < tilesY; ty++) for (let tx = 0; tx < tilesX; tx++) tiles.push([ty, tx]);
  // tiles per block so that the block's products (16 per tile and channel) and inputs fit
  const ct = ciphertextBytes(be.slots * 2, levelIn);
  const budget = ctx.memoryBudget ?? 2e9;
  const perTile = ct * 16 * (cos.length + 1.5);
  const T = Math.max(1, Math.min(tiles.length, Math.floor(budget / perTile)));
  for (let b0 = 0; b0 < tiles.length; b0 += T) {
    const block = tiles.slice(b0, b0 + T);
    const M: (C | null)[] = new Array(cos.length * block.length * 16).fill(null);
    for (let ci = 0; ci < cin; ci++) {
      // input pixels this block reads, at the step's level
      const cache = new Map<number, C | null>();
      const owned: C[] = [];
      const releases: (() => void)[] = [];
      // pixel (row, col) of the 4x4 input tile of output tile (ty, tx): a tap of the convolution's index map
      const pixel = (ty: number, tx: number, row: number, col: number): C | null => {
        const pos = convInputPixel(op.geom, 2 * ty, 2 * tx, row, col);
        if (pos < 0) return null;
        if (cache.has(pos)) return cache.get(pos)!;
        const r = read(src, pos * cin + ci);
        releases.push(r.release);
        let v = r.c;
        if (v && be.levelOf(v) > levelIn) {
          v = be.clone(v);
          be.modSwitchInPlace(v, levelIn);
          owned.push(v);
        }
        cache.set(pos, v);
        return v;
      };
      // V = B^T d B per tile
      const V: (C | null)[][] = block.map(([ty, tx]) => {
        const d = [0, 1, 2, 3].map((r) => [0, 1, 2, 3].map((c) => pixel(ty, tx, r, c)));
        const t = [0, 1, 2, 3].map((i) => [0, 1, 2, 3].map((c) => combine(be, BT[i], d.map((row) => row[c]))));
        const v: (C | null)[] = [];
        for (let i = 0; i < 4; i++) for (let j = 0; j < 4; j++) v.push(combine(be, BT[j], t[i]));
        for (const row of t) for (const x of row) if (x) be.free(x);
        return v;
      });
      let scale = 0;
      for (const v of V) for (const x of v) if (x) scale = be.scaleOf(x);
      if (scale) {
        const ptScale = target / scale;
        cos.forEach((co, ci2) => {
          const u = kernelTransform(op.kernel, cin, cout, ci, co);
          for (let e = 0; e < 16; e++) {
            if (u[e] === 0) continue;
            const pt = be.encodeConst(u[e], ptScale, levelIn);
            block.forEach((_, k) => {
              const x = V[k][e];
              if (!x) return;
              const idx = (ci2 * block.length + k) * 16 + e;
              const m = M[idx];
              if (m) be.mulPlainAddInPlace(m, x, pt);
              else M[idx] = be.mulPlain(x, pt);
            });
            be.freePlain(pt);
          }
        });
      }
      for (const v of V) for (const x of v) if (x) be.free(x);
      for (const x of owned) be.free(x);
      for (const r of releases) r();
    }
    winogradOutputTransform(be, M, cos, block, op.geom, acc);
    for (const x of M) if (x) be.free(x);
  }
}

/** Y = A^T M A for each output channel and tile of a block, added straight into the step's accumulators. */
function winogradOutputTransform<C>(
  be: BatchContext<C>['be'],
  M: (C | null)[],
  cos: number[],
  block: [number, number][],
  geom: Extract<WeightedOp, { kind: 'conv' }>['geom'],
  acc: Map<number, C>,
): void {
  const { cout, outH, outW } = geom;
  cos.forEach((co, ci2) => {
    block.forEach(([ty, tx], k) => {
      const m = (i: number, j: number) => M[(ci2 * block.length + k) * 16 + i * 4 + j];
      const r = [0, 1].map((a) => [0, 1, 2, 3].map((j) => combine(be, AT[a], [0, 1, 2, 3].map((i) => m(i, j)))));
      for (let a = 0; a < 2; a++) {
        for (let bb = 0; bb < 2; bb++) {
          const oy = 2 * ty + a;
          const ox = 2 * tx + bb;
          if (oy >= outH || ox >= outW) continue;
          const y = combine(be, AT[bb], r[a]);
          if (!y) continue;
          const o = (oy * outW + ox) * cout + co;
          const prev = acc.get(o);
          if (prev) {
            be.addInPlace(prev, y);
            be.free(y);
          } else acc.set(o, y);
        }
      }
      for (const row of r) for (const x of row) if (x) be.free(x);
    });
  });
}

function runPower<C>(ctx: BatchContext<C>, s: Extract<Step, { kind: 'power' }>, keep: (o: number) => boolean, out: Map<number, C | null>, read: Reader<C>): void {
  const { program: p, be } = ctx;
  for (const o of elementsOf(size(p.tensors[s.out].shape), keep)) {
    const A = read(s.a, o);
    const B = s.b === s.a ? A : read(s.b, o);
    if (!A.c || !B.c) {
      out.set(o, null);
    } else {
      let a: C = A.c;
      let b: C = B.c;
      const tmps: C[] = [];
      const l = Math.min(be.levelOf(a), be.levelOf(b));
      if (be.levelOf(a) > l) tmps.push((a = be.clone(a)));
      if (be.levelOf(b) > l) tmps.push((b = be.clone(b)));
      for (const t of tmps) be.modSwitchInPlace(t, l);
      const r = s.a === s.b ? be.square(a) : be.multiply(a, b);
      be.rescaleInPlace(r);
      for (const t of tmps) be.free(t);
      out.set(o, r);
    }
    A.release();
    if (s.b !== s.a) B.release();
  }
}

function runStruct<C>(ctx: BatchContext<C>, s: Extract<Step, { kind: 'struct' }>, keep: (o: number) => boolean, out: Map<number, C | null>, read: Reader<C>): void {
  const { program: p, be } = ctx;
  if (s.op.kind === 'rotate') {
    runRotate(ctx, s, s.op, keep, out, read);
    return;
  }
  const e = structEntries(s.op, p.tensors[s.src].shape, keep);
  const sums = new Map<number, C>();
  let scale = be.scale;
  for (let k = 0; k < e.length; k++) {
    const { c, release } = read(s.src, e.inp[k]);
    if (c) {
      scale = be.scaleOf(c);
      const o = e.out[k];
      const a = sums.get(o);
      if (a) be.addInPlace(a, c);
      else sums.set(o, be.clone(c));
    }
    release();
  }
  const level = levelOfTensor(p, be.topLevel, s.out);
  for (const o of elementsOf(size(p.tensors[s.out].shape), keep)) {
    const a = sums.get(o) ?? null;
    if (!a) out.set(o, constant(be, p, s, o, scale, level));
    else {
      addBias(be, p, s, o, a);
      out.set(o, a);
    }
  }
}

/** Token packing's view of other tokens: each output a rotated copy of one input ciphertext. */
function runRotate<C>(
  ctx: BatchContext<C>,
  s: Extract<Step, { kind: 'struct' }>,
  op: Extract<StructOp, { kind: 'rotate' }>,
  keep: (o: number) => boolean,
  out: Map<number, C | null>,
  read: Reader<C>,
): void {
  const { program: p, be } = ctx;
  const level = levelOfTensor(p, be.topLevel, s.out);
  for (const o of elementsOf(op.index.length, keep)) {
    const { c, release } = read(s.src, op.index[o]);
    let r: C | null = null;
    if (c) {
      // dropped to the level the next step reads first: fewer primes to key-switch
      const low = be.levelOf(c) > level ? be.clone(c) : null;
      if (low) be.modSwitchInPlace(low, level);
      r = op.steps[o] ? be.rotate(low ?? c, op.steps[o]) : (low ?? be.clone(c));
      if (low && op.steps[o]) be.free(low);
    }
    release();
    if (r) addBias(be, p, s, o, r);
    out.set(o, r ?? constant(be, p, s, o, be.scale, level));
  }
}

/** Client side: sample s of the chunk goes to slot s of every element's vector. */
export function packBatch(x: ArrayLike<number>, per: number, start: number, count: number, slots: number): Float64Array[] {
  const vecs: Float64Array[] = [];
  for (let e = 0; e < per; e++) {
    const v = new Float64Array(slots);
    for (let s = 0; s < count; s++) v[s] = x[(start + s) * per + e];
    vecs.push(v);
  }
  return vecs;
}

/** Client side: logits of the chunk's samples from the decrypted output vectors. */
export function unpackBatch(outputs: (Float64Array | null)[], classes: number, count: number): Float64Array {
  const logits = new Float64Array(count * classes);
  for (let k = 0; k < classes; k++) {
    const v = outputs[k];
    if (!v) continue;
    for (let s = 0; s < count; s++) logits[s * classes + k] = v[s];
  }
  return logits;
}
