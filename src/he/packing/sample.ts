import type { CkksBackend } from '../backend.js';
import type { HeProgram, Step, StructOp, WeightedOp } from '../program.js';
import { lastUses, stepSources } from '../program.js';
import type { ResiduePlain } from '../plain-sums.js';
import { type Entries, structEntries, weightedEntries } from '../linear-map.js';
import { applyWeighted } from '../compile.js';
import { applyStructOp } from '../reference.js';
import { HepolyError } from '../../util/errors.js';
import type { Team } from '../team.js';
import { babyKey, collectPartials, othersFirst, sendPartials, type StepShares, stepShares, sumOutputs } from './sample-team.js';
import { type BsgsPlan, DiagSet, addFolded, addPlaced, planBsgs, runsAligned } from './diagonals.js';
import {
  type Layout,
  type PlaneInfo,
  compactPlane,
  elementCount,
  foldedLayout,
  nextPow2,
  phaseLayout,
  padLayout,
  placeValues,
  planeLayout,
  relabel,
  runOf,
  vectorLayout,
} from './layout.js';

/**
 * Sample packing (LoLa / Gazelle style): one sample's tensor is spread over the slots of a
 * few ciphertexts, and linear layers become sums of rotated ciphertexts times diagonal
 * plaintexts. Latency is one sample's pass; the diagonals are encoded once per program and
 * reused for every sample.
 *
 * Layout choices (see layout.ts): images as channel planes, convolutions write their output
 * on the input's grid (stride and pooling double the strides), dense layers use the folded
 * diagonal method and leave their output repeated across the ciphertext, which is exactly
 * what the next dense layer wants. Sum pooling is rotate-and-add (no level).
 *
 * A program with `interleave` = m evaluates m samples at once, interleaved innermost (every
 * layout's run is m): the same plan, strides times m, each diagonal filled by all m samples.
 */

/** A tensor that is never put in ciphertexts: a struct op folded into its consumers. */
interface VirtualTensor {
  base: number;
  /** (virtual element, base element, weight) */
  entries: Entries;
  bias: Float64Array | null;
}

export type SampleStep =
  | {
      kind: 'linear';
      step: number;
      inputs: { tensor: number; ct: number }[];
      bsgs: BsgsPlan;
      /** rotate-and-add steps after the sum (folded dense outputs) */
      fold: number[];
      bias: Float64Array | null;
    }
  | { kind: 'power'; step: number }
  /** sum pooling: per pass, add rotations of the running sum by these steps */
  | { kind: 'rotsum'; step: number; passes: number[][] }
  | { kind: 'relabel'; step: number }
  /** sum pooling of a phase-grouped layout: output ciphertext j = sum over groups of their j-th */
  | { kind: 'groupsum'; step: number; groups: number; ctsPerGroup: number }
  | { kind: 'virtual'; step: number };

export interface SamplePlan {
  slots: number;
  /** per tensor; null for virtual tensors */
  layouts: (Layout | null)[];
  steps: SampleStep[];
  /** every rotation step the program uses (Galois keys to generate) */
  rotationSteps: number[];
  stats: { rotations: number; diagonals: number; ciphertexts: number };
  /** set by `clientPlan`: the diagonals are gone, no evaluator may run it */
  clientOnly?: boolean;
}

/**
 * The plan without its diagonals: layouts, rotation steps and stats, what the client needs to
 * pack, unpack and make Galois keys (the server plans for itself). The packing search keeps
 * dozens of candidates, whose diagonals would otherwise stay in memory until it ends.
 */
export function clientPlan(plan: SamplePlan): SamplePlan {
  const steps = plan.steps.map((st) => (st.kind === 'linear' ? { ...st, bsgs: { ...st.bsgs, outputs: new Map() } } : st));
  return { ...plan, steps, clientOnly: true };
}

export function planSample(p: HeProgram, slots: number): SamplePlan {
  const layouts: (Layout | null)[] = new Array(p.tensors.length).fill(null);
  const virtuals = new Map<number, VirtualTensor>();
  const run = p.interleave ?? 1;
  if (!(Number.isInteger(run) && run >= 1 && slots % run === 0)) throw new HepolyError(`interleaved packing: ${run} samples per ciphertext must be a power of two that divides the ${slots} slots`);
  // interleaved samples of an image that is only flattened (an MLP): a plain vector, whose
  // length is not bound by a plane of M samples per pixel
  const inShape = run > 1 && onlyFlattened(p) ? [elementCount(p.inputShape)] : p.inputShape;
  layouts[p.input] = inputLayout(inShape, slots, inputPhase(p), inputPad(p), run);
  const steps: SampleStep[] = [];
  const rot = new Set<number>();
  let rotations = 0;
  let diagonals = 0;
  const refreshAt = new Map((p.refreshes ?? []).map((r) => [r.before, r.tensors]));
  p.steps.forEach((s, idx) => {
    // the client re-encrypts every slot as it was: a refreshed tensor keeps its layout
    for (const { src, out } of refreshAt.get(idx) ?? []) {
      if (!layouts[src]) throw unsupported(`a client refresh of ${p.tensors[src].label}, which has no ciphertexts of its own`);
      layouts[out] = layouts[src];
    }
    if (s.kind === 'linear') {
      const ls = planLinear(p, s, idx, slots, layouts, virtuals, run);
      steps.push(ls.plan);
      layouts[s.out] = ls.out;
      for (const bs of ls.plan.bsgs.babies.values()) for (const b of bs) if (b) rot.add(b);
      for (const blocks of ls.plan.bsgs.outputs.values()) for (const bl of blocks) if (bl.g) rot.add(bl.g % slots);
      for (const f of ls.plan.fold) rot.add(f);
      rotations += ls.plan.bsgs.rotations + ls.plan.fold.length;
      diagonals += ls.plan.bsgs.diagonals;
    } else if (s.kind === 'power') {
      const la = layouts[s.a];
      const lb = layouts[s.b];
      if (!la || !lb) throw unsupported(`a polynomial of a pooled-to-one-value tensor (${p.tensors[s.a].label})`);
      if (la.replicas[0] !== lb.replicas[0] && !sameLayout(la, lb)) throw new Error('internal: power of tensors in different layouts');
      layouts[s.out] = la;
      steps.push({ kind: 'power', step: idx });
    } else if (s.kind === 'dot' || s.op.kind === 'gather') {
      throw unsupported(`${s.kind === 'dot' ? 'products of arbitrary element pairs' : 'a gather of elements'} (${p.tensors[s.out].label}: attention, patches)`);
    } else {
      const src = layouts[s.src];
      const inShape = p.tensors[s.src].shape;
      if (s.op.kind === 'sumpool' && src?.phase && s.op.size === src.phase.s && s.op.stride === src.phase.s) {
        const ph = src.phase;
        layouts[s.out] = planeLayout(ph.group, slots);
        steps.push({ kind: 'groupsum', step: idx, groups: ph.s * ph.s, ctsPerGroup: ph.ctsPerGroup });
      } else if (s.op.kind === 'sumpool' && src?.plane) {
        const out = pooledLayout(src, s.op, slots);
        layouts[s.out] = out;
        const passes = [
          range(1, s.op.size).map((dx) => dx * src.plane!.colStride),
          range(1, s.op.size).map((dy) => dy * src.plane!.rowStride),
        ].filter((x) => x.length);
        for (const pass of passes) for (const r of pass) rot.add(r);
        rotations += passes.flat().length * src.cts;
        steps.push({ kind: 'rotsum', step: idx, passes });
      } else if ((s.op.kind === 'flatten' || s.op.kind === 'pad') && src) {
        const out = s.op.kind === 'flatten' ? relabel(src, p.tensors[s.out].shape) : padLayout(src, s.op);
        if (s.bias) {
          for (let o = 0; o < s.bias.length; o++) {
            if (s.bias[o] !== 0 && out.replicas[0][o] < 0) throw unsupported(`a constant on zero padding (${p.tensors[s.out].label})`);
          }
        }
        layouts[s.out] = out;
        steps.push({ kind: 'relabel', step: idx });
      } else {
        virtuals.set(s.out, composeVirtual(s.op, inShape, s.src, virtuals, s.bias));
        steps.push({ kind: 'virtual', step: idx });
      }
    }
  });
  const out = layouts[p.output];
  if (!out) throw unsupported('a network whose output is a global pooling');
  const ciphertexts = layouts.reduce((a, l) => a + (l ? l.cts : 0), 0);
  return { slots, layouts, steps, rotationSteps: [...rot].sort((a, b) => a - b), stats: { rotations, diagonals, ciphertexts } };
}

function unsupported(what: string): HepolyError {
  return new HepolyError(`sample packing does not support ${what}. Use --packing batch`);
}

function range(a: number, b: number): number[] {
  const r: number[] = [];
  for (let i = a; i < b; i++) r.push(i);
  return r;
}

function sameLayout(a: Layout, b: Layout): boolean {
  if (a.replicas.length !== b.replicas.length) return false;
  return a.replicas.every((r, k) => r.length === b.replicas[k].length && r.every((v, i) => v === b.replicas[k][i]));
}

/**
 * The pooling factor s when the input feeds a stride-1 convolution whose output (or its powers)
 * is sum-pooled s x s with stride s: then the client sends the image phase-grouped and the
 * pooling becomes ciphertext additions. 1 otherwise.
 */
export function inputPhase(p: HeProgram): number {
  const convOuts = p.steps.filter((s) => s.kind === 'linear' && s.terms.some((t) => t.src === p.input));
  if (!convOuts.length) return 1;
  let phase = 0;
  for (const s of convOuts) {
    if (s.kind !== 'linear' || !s.terms.every((t) => t.src !== p.input || (t.op.kind === 'conv' && t.op.geom.stride === 1))) return 1;
    const derived = new Set([s.out]);
    for (const q of p.steps) if (q.kind === 'power' && (derived.has(q.a) || derived.has(q.b))) derived.add(q.out);
    for (const q of p.steps) {
      if (q.kind !== 'struct' || !derived.has(q.src)) continue;
      if (q.op.kind !== 'sumpool' || q.op.size !== q.op.stride || (phase && q.op.size !== phase)) return 1;
      phase = q.op.size;
    }
  }
  return phase || 1;
}

function onlyFlattened(p: HeProgram): boolean {
  return p.steps.every((s) => !stepSources(s).includes(p.input) || (s.kind === 'struct' && s.op.kind === 'flatten'));
}

/**
 * The zero padding applied to the input, when its only use is a pad (ResNet's pad_to). The
 * client then leaves the border's slots empty: a plane as tight as the image would give the
 * padded grid more columns than the row stride, and two outputs of the next convolution would
 * share a slot.
 */
export function inputPad(p: HeProgram): Extract<StructOp, { kind: 'pad' }> | null {
  const users = p.steps.filter((s) => stepSources(s).includes(p.input));
  const only = users.length === 1 ? users[0] : null;
  return only && only.kind === 'struct' && only.op.kind === 'pad' ? only.op : null;
}

/** Client input: image planes (replicated into free channel blocks), phase-grouped planes, or a plain vector. */
export function inputLayout(shape: number[], slots: number, phase = 1, pad: Extract<StructOp, { kind: 'pad' }> | null = null, run = 1): Layout {
  if (shape.length === 3) {
    if (phase > 1) {
      const l = phaseLayout(shape, phase, slots, true, run);
      if (l) return l;
    }
    if (pad) {
      const [H, W, C] = shape;
      const framed = compactPlane([H + pad.top + pad.bottom, W + pad.left + pad.right, C], slots, run);
      if (framed) return planeLayout({ ...framed, H, W, offset: pad.top * framed.rowStride + pad.left * framed.colStride }, slots, true);
    }
    const plane = compactPlane(shape, slots, run);
    if (!plane) {
      const need = nextPow2(shape[0] * shape[1]);
      if (run > 1) {
        const fits = slots / need;
        throw new HepolyError(
          `interleaved packing: ${run} samples of a ${shape[0]}x${shape[1]} image plane need ${need * run} slots, the ring has ${slots}. ` +
            (fits >= 2 ? `Use --packing interleaved:${fits} or fewer samples per ciphertext, larger parameters, or --packing sample` : 'Use larger parameters or --packing sample'),
        );
      }
      throw new HepolyError(`sample packing: one ${shape[0]}x${shape[1]} image plane needs ${shape[0] * shape[1]} slots, the ring has ${slots}. Use larger parameters or --packing batch`);
    }
    return planeLayout(plane, slots, true);
  }
  return vectorLayout(elementCount(shape), slots, run);
}

function pooledLayout(src: Layout, op: Extract<StructOp, { kind: 'sumpool' }>, slots: number): Layout {
  const pl = src.plane!;
  const [H, W, C] = src.shape;
  const oh = Math.floor((H - op.size) / op.stride) + 1;
  const ow = Math.floor((W - op.size) / op.stride) + 1;
  const replicas = src.replicas.map((rep) => {
    const pos = new Int32Array(oh * ow * C);
    for (let y = 0; y < oh; y++) for (let x = 0; x < ow; x++) for (let c = 0; c < C; c++) pos[(y * ow + x) * C + c] = rep[(y * op.stride * W + x * op.stride) * C + c];
    return pos;
  });
  void slots;
  return {
    shape: [oh, ow, C],
    cts: src.cts,
    replicas,
    plane: { ...pl, H: oh, W: ow, rowStride: pl.rowStride * op.stride, colStride: pl.colStride * op.stride },
    run: src.run,
  };
}

/**
 * Output grid of a convolution: the input's grid, strides multiplied by the conv stride. A
 * strided convolution whose channels span several ciphertexts multiplexes them into the gaps
 * it leaves (layout.ts), when they fit in the block.
 */
function convOutLayout(inPlane: PlaneInfo, op: Extract<WeightedOp, { kind: 'conv' }>, slots: number): Layout {
  const g = op.geom;
  const rowStride = inPlane.rowStride * g.stride;
  const colStride = inPlane.colStride * g.stride;
  const run = inPlane.run ?? 1;
  const inSubs = inPlane.subs ?? [0];
  const subs = g.stride > 1 && g.cout > inPlane.k * inSubs.length ? multiplexedSubs(inPlane, inSubs, g.stride) : inSubs;
  // the last pixel's run of samples must end inside the block
  const span = (subs: number[]) => (g.outH - 1) * rowStride + (g.outW - 1) * colStride + Math.max(...subs) + run;
  for (const s of subs === inSubs ? [inSubs] : [subs, inSubs]) {
    if (span(s) > inPlane.S) continue;
    const offset = Math.min(Math.max(inPlane.offset, 0), inPlane.S - span(s));
    const l = planeLayout({ H: g.outH, W: g.outW, C: g.cout, S: inPlane.S, k: inPlane.k, rowStride, colStride, offset, run, ...(s.length > 1 ? { subs: s } : {}) }, slots);
    // an odd-sized grid's last column plus a sub-position can reach the next row's first
    if (distinctSlots(l)) return l;
  }
  return planeLayout(compactPlane([g.outH, g.outW, g.cout], slots, run)!, slots);
}

function distinctSlots(l: Layout): boolean {
  const seen = new Set<number>();
  for (const g of l.replicas[0]) {
    if (g < 0) continue;
    if (seen.has(g)) return false;
    seen.add(g);
  }
  return true;
}

/** The input cell's sub-positions, each split into the stride x stride cells of the strided grid. */
function multiplexedSubs(inPlane: PlaneInfo, inSubs: number[], stride: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < stride; i++) for (let j = 0; j < stride; j++) for (const s of inSubs) out.push(s + i * inPlane.rowStride + j * inPlane.colStride);
  return out;
}

function composeVirtual(op: StructOp, inShape: number[], src: number, virtuals: Map<number, VirtualTensor>, bias: Float64Array | null): VirtualTensor {
  const e = structEntries(op, inShape);
  const prev = virtuals.get(src);
  let entries = e;
  let base = src;
  let b = bias ? Float64Array.from(bias) : null;
  if (prev) {
    entries = compose(e, prev.entries);
    base = prev.base;
    if (prev.bias) {
      const pb = applyStructOp(op, prev.bias, inShape);
      b = b ? b.map((v, i) => v + pb[i]) : Float64Array.from(pb);
    }
  }
  return { base, entries, bias: b };
}

/** (o, j, w) after (j, i, v) = (o, i, w v). */
function compose(outer: Entries, inner: Entries): Entries {
  const byOut = new Map<number, number[]>();
  for (let k = 0; k < inner.length; k++) {
    const j = inner.out[k];
    if (!byOut.has(j)) byOut.set(j, []);
    byOut.get(j)!.push(k);
  }
  const o: number[] = [];
  const i: number[] = [];
  const w: number[] = [];
  for (let k = 0; k < outer.length; k++) {
    for (const m of byOut.get(outer.inp[k]) ?? []) {
      const v = outer.w[k] * inner.w[m];
      if (v === 0) continue;
      o.push(outer.out[k]);
      i.push(inner.inp[m]);
      w.push(v);
    }
  }
  return { out: Int32Array.from(o), inp: Int32Array.from(i), w: Float64Array.from(w), length: o.length };
}

function planLinear(
  p: HeProgram,
  s: Extract<Step, { kind: 'linear' }>,
  idx: number,
  slots: number,
  layouts: (Layout | null)[],
  virtuals: Map<number, VirtualTensor>,
  run: number,
): { plan: Extract<SampleStep, { kind: 'linear' }>; out: Layout } {
  const outShape = p.tensors[s.out].shape;
  const nOut = elementCount(outShape);
  let bias = s.bias ? Float64Array.from(s.bias) : null;
  const terms = s.terms.map((t) => {
    const v = virtuals.get(t.src);
    let entries = weightedEntries(t.op);
    let base = t.src;
    if (v) {
      entries = compose(entries, v.entries);
      base = v.base;
      if (v.bias) {
        const vb = applyWeighted(t.op, v.bias, p.tensors[t.src].shape);
        bias = bias ? bias.map((x, i) => x + vb[i]) : Float64Array.from(vb);
      }
    }
    const layout = layouts[base];
    if (!layout) throw new Error(`internal: tensor ${base} has no layout`);
    return { op: t.op, entries, base, layout, virtual: !!v };
  });
  const first = terms[0];
  let out: Layout;
  let period = 0;
  const phased = first.op.kind === 'conv' && !first.virtual && first.layout.phase && first.op.geom.stride === 1
    ? phaseLayout([first.op.geom.outH, first.op.geom.outW, first.op.geom.cout], first.layout.phase.s, slots, false, run)
    : null;
  if (phased) out = phased;
  else if (first.op.kind === 'conv' && !first.virtual && first.layout.plane) out = convOutLayout(first.layout.plane, first.op, slots);
  else if (first.op.kind === 'scale' && !first.virtual) out = { ...first.layout, shape: outShape };
  else if (nOut * run <= slots) {
    out = foldedLayout(nOut, slots, run);
    period = out.period!;
  } else out = vectorLayout(nOut, slots, run);
  const aligned = (l: Layout) => runOf(l) === run && (run === 1 || runsAligned(l, run));
  if (!aligned(out)) throw new Error('internal: interleaved samples not aligned to their runs');
  const ds = new DiagSet(slots);
  const inputs: { tensor: number; ct: number }[] = [];
  for (const t of terms) {
    const baseIdx = inputs.length;
    for (let c = 0; c < t.layout.cts; c++) inputs.push({ tensor: t.base, ct: c });
    if (!aligned(t.layout)) throw new Error('internal: interleaved samples not aligned to their runs');
    if (period) addFolded(ds, t.entries, t.layout, baseIdx, period, run);
    else addPlaced(ds, t.entries, t.layout, baseIdx, out, run);
  }
  const fold: number[] = [];
  if (period) for (let st = period; st < slots; st *= 2) fold.push(st);
  return { plan: { kind: 'linear', step: idx, inputs, bsgs: planBsgs(ds), fold, bias }, out };
}

// ---------------------------------------------------------------- client side

/**
 * One pass's input tensor as slot vectors, one per ciphertext of the input layout. With
 * interleaved samples `x` holds them innermost (element e of sample s at e*run + s).
 */
export function packSample(plan: SamplePlan, p: HeProgram, x: ArrayLike<number>): Float64Array[] {
  const l = plan.layouts[p.input]!;
  const run = runOf(l);
  const vecs = Array.from({ length: l.cts }, () => new Float64Array(plan.slots));
  for (const rep of l.replicas) {
    for (let e = 0; e < rep.length; e++) {
      const g = rep[e];
      if (g < 0) continue;
      const v = vecs[Math.floor(g / plan.slots)];
      for (let s = 0; s < run; s++) v[(g % plan.slots) + s] = x[e * run + s];
    }
  }
  return vecs;
}

/** A tensor's element values from its decrypted ciphertexts (interleaved samples innermost). */
export function unpackTensor(plan: SamplePlan, tensor: number, decrypted: Float64Array[]): Float64Array {
  const l = plan.layouts[tensor]!;
  const run = runOf(l);
  const rep = l.replicas[0];
  const out = new Float64Array(rep.length * run);
  for (let e = 0; e < rep.length; e++) {
    const g = rep[e];
    if (g < 0) continue;
    const v = decrypted[Math.floor(g / plan.slots)];
    for (let s = 0; s < run; s++) out[e * run + s] = v[(g % plan.slots) + s];
  }
  return out;
}

// ---------------------------------------------------------------- server side

interface PreparedLinear<P> {
  levelIn: number;
  target: number;
  /**
   * plaintexts parallel to bsgs.outputs blocks' items: as residues for the backend's plaintext
   * sums where it has them at this level (outside its heap), else the backend's own
   */
  plains: Map<number, (P | null)[][]> | null;
  residues: Map<number, (ResiduePlain | null)[][]> | null;
  bias: Map<number, P>;
}

/**
 * Diagonals and biases encoded as plaintexts at the level and scale each step will meet.
 * Done once per program and backend; every sample reuses them.
 */
export class SampleEvaluator<C, P> {
  private prepared = new Map<number, PreparedLinear<P>>();
  private scales: number[] = [];

  /** steps whose residue diagonals stay encoded across segments (`keptDiagonalBytes`) */
  private readonly pinned = new Set<number>();
  private pinnedBytes = 0;
  private readonly shares = new Map<number, StepShares>();

  constructor(
    readonly program: HeProgram,
    readonly plan: SamplePlan,
    readonly be: CkksBackend<C, P>,
    /**
     * keptDiagonalBytes: a program cut for client refreshes encodes each segment's diagonals when
     * the segment comes; a server taking request after request would encode them all again for
     * each. Diagonals held as residues (JS memory, not SEAL's heap) up to this many bytes are
     * kept instead, the first steps that fit (a fixed set: segments come round in order, so an
     * LRU would evict each just before its turn). Default 0.
     */
    private readonly opts: {
      keptDiagonalBytes?: number;
      /**
       * a team of threads evaluating each sample together (src/he/team.ts): this member
       * encodes and computes only its share of every linear step
       */
      team?: Team<C>;
    } = {},
  ) {
    if (plan.clientOnly) throw new Error('internal: a client-only plan (no diagonals) given to an evaluator');
    this.predictScales();
    // a program cut for client refreshes is deeper than one wasm heap holds diagonals for:
    // those are encoded one segment at a time (runRange)
    if (!program.refreshes?.length) for (const st of plan.steps) if (st.kind === 'linear') this.prepare(st);
  }

  /** Keeps the encoded diagonals of steps [from, to) only (server setup work, not per sample). */
  prepareRange(from: number, to: number): void {
    for (const [step, prep] of this.prepared) {
      if ((step >= from && step < to) || this.pinned.has(step)) continue;
      this.freePrepared(prep);
      this.prepared.delete(step);
    }
    for (const st of this.plan.steps) if (st.kind === 'linear' && st.step >= from && st.step < to && !this.prepared.has(st.step)) this.prepare(st);
  }

  private freePrepared(prep: PreparedLinear<P>): void {
    for (const blocks of prep.plains?.values() ?? []) for (const b of blocks) for (const pt of b) if (pt) this.be.freePlain(pt);
    for (const pt of prep.bias.values()) this.be.freePlain(pt);
  }

  /** This member's share of a linear step (everything, without a team). */
  private sharesOf(st: Extract<SampleStep, { kind: 'linear' }>): StepShares {
    let sh = this.shares.get(st.step);
    if (!sh) this.shares.set(st.step, (sh = stepShares(st.bsgs, this.opts.team?.size ?? 1, st.step)));
    return sh;
  }

  private ownsBaby(st: Extract<SampleStep, { kind: 'linear' }>, input: number, b: number): boolean {
    return this.sharesOf(st).baby.get(babyKey(input, b)) === (this.opts.team?.rank ?? 0);
  }

  private level(t: number): number {
    return this.be.topLevel - this.program.tensors[t].depth;
  }

  /** The scale every tensor will carry, computed the way SEAL computes it. */
  private predictScales(): void {
    const { program: p, be } = this;
    this.scales[p.input] = be.scale;
    for (const r of p.refreshes ?? []) for (const { out } of r.tensors) this.scales[out] = be.scale;
    for (const s of p.steps) {
      if (s.kind === 'linear') {
        const l = this.level(s.out) + 1;
        this.scales[s.out] = (be.scale * be.prime(l)) / be.prime(l);
      } else if (s.kind === 'power') {
        const l = Math.min(this.level(s.a), this.level(s.b));
        this.scales[s.out] = (this.scales[s.a] * this.scales[s.b]) / be.prime(l);
      } else if (s.kind === 'struct') this.scales[s.out] = this.scales[s.src];
    }
  }

  private baseOf(t: number): number {
    const s = this.program.steps.find((x) => x.out === t);
    if (s && s.kind === 'struct' && !this.plan.layouts[t]) return this.baseOf(s.src);
    return t;
  }

  private prepare(st: Extract<SampleStep, { kind: 'linear' }>): void {
    const { program: p, be, plan } = this;
    const s = p.steps[st.step] as Extract<Step, { kind: 'linear' }>;
    const levelIn = this.level(s.out) + 1;
    const target = be.scale * be.prime(levelIn);
    const scaleOf = (input: number) => target / this.scales[this.baseOf(st.inputs[input].tensor)];
    const residues = this.residuesOf(st, scaleOf, levelIn);
    const plains = residues ? null : new Map([...st.bsgs.outputs].map(([ct, blocks]) => [ct, blocks.map((bl) => bl.items.map((it) => (this.ownsBaby(st, it.input, it.b) ? be.encode(it.v, scaleOf(it.input), levelIn) : null)))]));
    const bias = new Map<number, P>();
    if (st.bias) {
      const out = plan.layouts[s.out]!;
      for (let ct = 0; ct < out.cts; ct++) {
        const v = placeValues(out, st.bias, plan.slots, ct);
        if (v) bias.set(ct, be.encode(v, target, levelIn));
      }
    }
    this.prepared.set(st.step, { levelIn, target, plains, residues, bias });
    if (residues) this.pinIfRoom(st.step, residues);
  }

  private pinIfRoom(step: number, residues: Map<number, (ResiduePlain | null)[][]>): void {
    let bytes = 0;
    for (const blocks of residues.values()) for (const b of blocks) for (const r of b) bytes += r?.bytes ?? 0;
    if (this.pinnedBytes + bytes > (this.opts.keptDiagonalBytes ?? 0)) return;
    this.pinned.add(step);
    this.pinnedBytes += bytes;
  }

  /** The step's diagonals as residues for the backend's plaintext sums; null where it has none at this level (its first answer tells). */
  private residuesOf(st: Extract<SampleStep, { kind: 'linear' }>, scaleOf: (input: number) => number, levelIn: number): Map<number, (ResiduePlain | null)[][]> | null {
    const be = this.be;
    if (!be.plainSums || !be.encodeResidues) return null;
    // the step's first diagonal asks the backend, so every team member decides alike, even one with no diagonal of its own here
    const first = [...st.bsgs.outputs.values()].flat()[0]?.items[0];
    const probe = first ? be.encodeResidues(first.v, scaleOf(first.input), levelIn) : null;
    if (first && !probe) return null;
    const out = new Map<number, (ResiduePlain | null)[][]>();
    for (const [ct, blocks] of st.bsgs.outputs) {
      const enc: (ResiduePlain | null)[][] = [];
      for (const bl of blocks) {
        const row: (ResiduePlain | null)[] = [];
        for (const it of bl.items) {
          if (!this.ownsBaby(st, it.input, it.b)) {
            row.push(null);
            continue;
          }
          const r = it === first ? probe : be.encodeResidues(it.v, scaleOf(it.input), levelIn);
          if (!r) return null;
          row.push(r);
        }
        enc.push(row);
      }
      out.set(ct, enc);
    }
    return out;
  }

  /** Evaluates one sample: input ciphertexts in, output ciphertexts out (caller frees both). */
  run(inputs: C[], onTensor?: (t: number, cts: C[]) => void): C[] {
    const p = this.program;
    return this.runRange(new Map([[p.input, inputs]]), 0, p.steps.length, [p.output], onTensor).get(p.output)!;
  }

  /**
   * Evaluates program steps [from, to) (one segment between client refreshes) on the given
   * tensors, which stay the caller's. Returns the `keep` tensors (the caller frees them);
   * every other intermediate is freed after its last use.
   */
  runRange(given: Map<number, C[]>, from: number, to: number, keep: number[], onTensor?: (t: number, cts: C[]) => void): Map<number, C[]> {
    const { program: p, be, plan } = this;
    if (p.refreshes?.length) this.prepareRange(from, to);
    const vals = new Map(given);
    const kept = new Set(keep);
    const last = lastUses(p);
    // a virtual tensor is read through its base: the base lives as long as the virtual one
    for (const st of plan.steps) {
      if (st.kind !== 'virtual') continue;
      const out = p.steps[st.step].out;
      const base = this.baseOf(out);
      last.set(base, Math.max(last.get(base) ?? -1, last.get(out) ?? -1));
    }
    const owned = new Set<number>();
    plan.steps.forEach((st, k) => {
      if (st.step < from || st.step >= to) return;
      const s = p.steps[st.step];
      let out: C[] | null = null;
      if (st.kind === 'linear') out = this.linear(st, vals);
      else if (st.kind === 'power' && s.kind === 'power') out = this.power(s, vals);
      else if (st.kind === 'rotsum' && s.kind === 'struct') out = this.rotsum(st, s, vals);
      else if (st.kind === 'groupsum' && s.kind === 'struct') {
        const src = vals.get(s.src)!;
        out = [];
        for (let j = 0; j < st.ctsPerGroup; j++) {
          const acc = be.clone(src[j]);
          for (let g = 1; g < st.groups; g++) be.addInPlace(acc, src[g * st.ctsPerGroup + j]);
          out.push(acc);
        }
        if (s.bias) this.addBias(out, s.out, s.bias);
      }
      else if (st.kind === 'relabel' && s.kind === 'struct') {
        out = vals.get(s.src)!.map((c) => be.clone(c));
        if (s.bias) this.addBias(out, s.out, s.bias);
      }
      if (out) {
        vals.set(s.out, out);
        owned.add(s.out);
        onTensor?.(s.out, out);
      }
      for (const t of new Set([...stepSources(s), ...(st.kind === 'linear' ? st.inputs.map((i) => i.tensor) : [])])) {
        if ((last.get(t) ?? -1) <= k && owned.has(t) && !kept.has(t)) {
          for (const c of vals.get(t)!) be.free(c);
          vals.delete(t);
          owned.delete(t);
        }
      }
    });
    const result = new Map<number, C[]>();
    for (const t of kept) {
      const cts = vals.get(t);
      if (!cts) throw new Error(`internal: tensor ${t} was not computed in steps ${from}..${to}`);
      // a kept tensor the caller gave us is cloned, so the caller can free both
      result.set(t, owned.has(t) ? cts : cts.map((c) => be.clone(c)));
    }
    for (const [t, cs] of vals) if (!kept.has(t) && owned.has(t)) for (const c of cs) be.free(c);
    return result;
  }

  private addBias(cts: C[], t: number, bias: Float64Array): void {
    const l = this.plan.layouts[t]!;
    cts.forEach((c, ct) => {
      const v = placeValues(l, bias, this.plan.slots, ct);
      if (v) this.be.addVecInPlace(c, v);
    });
  }

  private linear(st: Extract<SampleStep, { kind: 'linear' }>, vals: Map<number, C[]>): C[] {
    const be = this.be;
    const prep = this.prepared.get(st.step)!;
    const outLayout = this.plan.layouts[this.program.steps[st.step].out]!;
    const temps = new Set<C>();
    const babies = this.babySteps(st, vals, prep.levelIn, temps);
    const team = this.opts.team;
    const shares = this.sharesOf(st);
    const { order, others } = othersFirst(team, shares);
    let sent = !team;
    const send = (inners: Map<number, (C | null)[]>) => {
      sendPartials(team!, be, st.step, shares, inners);
      sent = true;
    };
    const inners = prep.residues ? this.residueInnerSums(st, prep, babies, temps, order, team ? { after: others, run: send } : undefined) : this.plainInnerSums(st, prep, babies);
    for (const t of temps) be.free(t);
    if (!sent) send(inners);
    if (team) collectPartials(team, be, st.step, shares, inners);
    const accs: (C | null)[] = [];
    for (let ct = 0; ct < outLayout.cts; ct++) {
      const blocks = st.bsgs.outputs.get(ct) ?? [];
      const row = inners.get(ct) ?? [];
      let acc: C | null = null;
      for (let bi = 0; bi < blocks.length; bi++) {
        const inner = row[bi];
        if (!inner) continue;
        const g = blocks[bi].g;
        const rotated = g !== 0 ? be.rotate(inner, g) : inner;
        if (rotated !== inner) be.free(inner);
        if (acc) {
          be.addInPlace(acc, rotated);
          be.free(rotated);
        } else acc = rotated;
      }
      accs.push(acc);
    }
    if (team) sumOutputs(team, be, st.step, accs);
    return accs.map((acc, ct) => (acc ? this.finishOutput(st, prep, ct, acc) : this.biasOnly(st, outLayout, prep.levelIn, ct)));
  }

  /** The folded dense outputs' rotate-and-add, the bias and the rescale of one output ciphertext. */
  private finishOutput(st: Extract<SampleStep, { kind: 'linear' }>, prep: PreparedLinear<P>, ct: number, a: C): C {
    const be = this.be;
    for (const f of st.fold) {
      const r = be.rotate(a, f);
      be.addInPlace(a, r);
      be.free(r);
    }
    const bp = prep.bias.get(ct);
    if (bp) be.addPlainInPlace(a, bp);
    be.rescaleInPlace(a);
    return a;
  }

  /** An output ciphertext no input reaches: it holds only the bias (or zeros). */
  private biasOnly(st: Extract<SampleStep, { kind: 'linear' }>, outLayout: Layout, levelIn: number, ct: number): C {
    const v = st.bias ? placeValues(outLayout, st.bias, this.plan.slots, ct) : null;
    return this.be.encryptVec(v ?? new Float64Array(this.plan.slots), this.be.scale, levelIn - 1);
  }

  /** Every giant step's sum of diagonal x baby, by SEAL's plaintext products. */
  private plainInnerSums(st: Extract<SampleStep, { kind: 'linear' }>, prep: PreparedLinear<P>, babies: Map<number, Map<number, C>>): Map<number, (C | null)[]> {
    const out = new Map<number, (C | null)[]>();
    for (const [ct, blocks] of st.bsgs.outputs) {
      const plains = prep.plains!.get(ct)!;
      out.set(
        ct,
        blocks.map((bl, bi) => {
          let inner: C | null = null;
          bl.items.forEach((it, ii) => {
            const x = babies.get(it.input)?.get(it.b);
            const pt = plains[bi][ii];
            // a team member has only its own babies' products
            if (!x || !pt) return;
            if (inner) this.be.mulPlainAddInPlace(inner, x, pt);
            else inner = this.be.mulPlain(x, pt);
          });
          return inner;
        }),
      );
    }
    return out;
  }

  /**
   * The same sums on the residues: babies loaded in groups the backend's memory budget holds
   * (each group's partial sums added up), each one freed from SEAL's heap once read.
   */
  private residueInnerSums(
    st: Extract<SampleStep, { kind: 'linear' }>,
    prep: PreparedLinear<P>,
    babies: Map<number, Map<number, C>>,
    temps: Set<C>,
    /** the blocks in the order to sum them */
    order: readonly { ct: number; bi: number }[],
    /** once the first `after` blocks are whole (in the last group), `run` (a team member sends them) */
    partway?: { after: number; run: (inners: Map<number, (C | null)[]>) => void },
  ): Map<number, (C | null)[]> {
    const be = this.be;
    const sums = be.plainSums?.(prep.levelIn);
    if (!sums) throw new Error(`internal: diagonals encoded as residues for a backend without plaintext sums at level ${prep.levelIn}`);
    const loads = [...babies].flatMap(([input, m]) => [...m].map(([b, c]) => ({ key: babyKey(input, b), c })));
    const out = new Map([...st.bsgs.outputs].map(([ct, blocks]) => [ct, blocks.map((): C | null => null)]));
    const last = Math.max(0, Math.ceil(loads.length / sums.capacity) - 1) * sums.capacity;
    for (let g = 0; g < Math.max(1, loads.length); g += sums.capacity) {
      for (const { key, c } of loads.slice(g, g + sums.capacity)) {
        sums.load(key, c);
        if (temps.delete(c)) be.free(c);
      }
      order.forEach(({ ct, bi }, k) => {
        if (g === last && k === partway?.after) partway.run(out);
        const row = out.get(ct)!;
        const bl = st.bsgs.outputs.get(ct)![bi];
        const ps = prep.residues!.get(ct)![bi];
        // a zero diagonal adds nothing: leaving it out spares an encryption of zero where a
        // (team member's) block has only such terms
        const terms = bl.items.flatMap((it, ii) => {
          const key = babyKey(it.input, it.b);
          return sums.has(key) && !ps[ii]!.zero ? [{ key, p: ps[ii]! }] : [];
        });
        if (!terms.length) return;
        const part = sums.sum(terms);
        const prior = row[bi];
        if (!prior) row[bi] = part;
        else {
          be.addInPlace(prior, part);
          be.free(part);
        }
      });
      if (g === last && order.length === partway?.after) partway.run(out);
      sums.reset();
    }
    sums.close();
    return out;
  }

  /** Each input at the step's level, then its baby-step rotations (new ciphertexts go to `temps`). */
  private babySteps(st: Extract<SampleStep, { kind: 'linear' }>, vals: Map<number, C[]>, levelIn: number, temps: Set<C>): Map<number, Map<number, C>> {
    const be = this.be;
    const babies = new Map<number, Map<number, C>>();
    for (const [input, all] of st.bsgs.babies) {
      const bs = all.filter((b) => this.ownsBaby(st, input, b));
      if (!bs.length) continue;
      const ref = st.inputs[input];
      let x = vals.get(ref.tensor)![ref.ct];
      if (be.levelOf(x) > levelIn) {
        x = be.clone(x);
        be.modSwitchInPlace(x, levelIn);
        temps.add(x);
      }
      const m = new Map<number, C>();
      for (const b of bs) {
        if (b === 0) m.set(0, x);
        else {
          const r = be.rotate(x, b);
          temps.add(r);
          m.set(b, r);
        }
      }
      babies.set(input, m);
    }
    return babies;
  }

  private power(s: Extract<Step, { kind: 'power' }>, vals: Map<number, C[]>): C[] {
    const be = this.be;
    const A = vals.get(s.a)!;
    const B = vals.get(s.b)!;
    return A.map((a0, k) => {
      let a = a0;
      let b = B[k];
      const tmps: C[] = [];
      const l = Math.min(be.levelOf(a), be.levelOf(b));
      if (be.levelOf(a) > l) tmps.push((a = be.clone(a)));
      if (be.levelOf(b) > l) tmps.push((b = be.clone(b)));
      for (const t of tmps) be.modSwitchInPlace(t, l);
      const r = s.a === s.b ? be.square(a) : be.multiply(a, b);
      be.rescaleInPlace(r);
      for (const t of tmps) be.free(t);
      return r;
    });
  }

  private rotsum(st: Extract<SampleStep, { kind: 'rotsum' }>, s: Extract<Step, { kind: 'struct' }>, vals: Map<number, C[]>): C[] {
    const be = this.be;
    const out = vals.get(s.src)!.map((c) => {
      const acc = be.clone(c);
      for (const pass of st.passes) {
        const base = be.clone(acc);
        for (const r of pass) {
          const t = be.rotate(base, r);
          be.addInPlace(acc, t);
          be.free(t);
        }
        be.free(base);
      }
      return acc;
    });
    if (s.bias) this.addBias(out, s.out, s.bias);
    return out;
  }

  delete(): void {
    for (const prep of this.prepared.values()) this.freePrepared(prep);
    this.prepared.clear();
  }
}
