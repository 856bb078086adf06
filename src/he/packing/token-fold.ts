import type { DotPairs, HeProgram, LinearTerm, RefreshPoint, Step, TensorInfo } from '../program.js';
import { weightedEntries } from '../linear-map.js';
import { size } from '../tensor-ops.js';
import { HepolyError } from '../../util/errors.js';

/**
 * Token packing: a transformer's batch program folded onto token blocks. Batch packing gives
 * every element of every tensor its own ciphertext (a [16, 64] activation is 1,024
 * ciphertexts, each serving up to N/2 samples). Here the slots are blocks of S slots, slot
 * t*S + s holding token t of sample s (B = T blocks when T is a power of two; below), and a
 * ciphertext holds one *feature* of every token: the same activation is 64 ciphertexts. A per-token layer is then one scalar product
 * per kernel entry instead of T, and a client refresh carries T times fewer ciphertexts.
 *
 * An element that reads another token (attention's keys and values, the token mean) reads a
 * rotated copy: rotating by d*S brings token t + d (mod T) into block t for every t at once. The
 * fold is generic: each output element gets its token (where its first operand sits), and
 * elements whose reads are the same relative to their token, (feature, token offset, weight),
 * become one folded feature. Biases that differ between tokens (positions) become per-block
 * constants. Levels, rescale points and values are those of the batch program.
 *
 * The slots are B blocks (a power of two), block b holding token b mod T. When T divides B the
 * rotations wrap exactly. When it does not (charlm-poly's 24 tokens), block b + d holds token
 * (b + d) mod T only while b + d is below B: every read at offset d leaves the last d blocks
 * stale. The fold counts, along every path, the offsets read in a row (`shrink`) and takes B
 * large enough that the first T blocks stay right to the end: B >= T + shrink (2 layers of
 * 24 tokens: 24 + 2 x 23 -> B = 128, S = N/256 samples per pass). No mask, no level.
 */

/** Where each element of an unfolded tensor sits: token block and folded feature. */
export interface TokenMap {
  token: Int32Array;
  feature: Int32Array;
  features: number;
}

export interface TokenFold {
  /** the folded program (slots in `blocks` blocks) */
  program: HeProgram;
  tokens: number;
  /** token blocks (a power of two): block b holds token b mod tokens */
  blocks: number;
  /** samples per pass: the slots of one token block */
  stride: number;
  /** per unfolded input element: its ciphertext (feature) and token block (the client packs by it) */
  input: { token: Int32Array; feature: Int32Array };
  /** per class: the output ciphertext and token block its logit is read from */
  output: { token: Int32Array; feature: Int32Array };
  /** per folded tensor: the unfolded tensor it holds, or -1 for rotated copies */
  origin: number[];
  /** per folded tensor with an origin: its element map (folded feature and token of each unfolded element) */
  maps: (TokenMap | null)[];
  rotationSteps: number[];
}

/** The sequence length of a transformer program: its input's rows, or the rows its input is gathered into (patches); 1 without. */
export function tokenCount(p: HeProgram): number {
  if (!p.steps.some((s) => (s.kind === 'linear' || s.kind === 'dot') && s.terms.some((t) => t.op.kind === 'tokens'))) return 1;
  if (p.inputShape.length === 2) return p.inputShape[0];
  const gather = p.steps.find((s) => s.kind === 'struct' && s.src === p.input && s.op.kind === 'gather');
  return gather && gather.kind === 'struct' && gather.op.kind === 'gather' && gather.op.shape.length === 2 ? gather.op.shape[0] : 1;
}

/** true, or why token packing cannot fold this program at `slots`. */
export function tokenFoldProblem(p: HeProgram, slots: number): true | string {
  const T = tokenCount(p);
  if (T < 2) return 'token packing folds token sequences (transformers); this program has no per-token layer; drop --packing token (the default picks a packing for this program)';
  if (T > slots) return `token packing needs a block of slots per token: ${T} tokens, ${slots} slots; use batch packing or larger --params`;
  for (const s of p.steps) {
    if (s.kind === 'struct' && s.op.kind !== 'gather') return `token packing folds gathers, not ${s.op.kind} (an image op); drop --packing token (the default picks a packing for this program)`;
    if (s.kind === 'linear' && s.terms.some((t) => t.op.kind === 'conv')) return 'token packing folds token sequences, not convolutions; drop --packing token (the default picks a packing for this program)';
  }
  return true;
}

/** A read of one step: operand role, unfolded tensor and element, weight (or sign). */
interface Read {
  role: number;
  tensor: number;
  element: number;
  w: number;
}

/** Reads of a pair of operands (dot products): both sides plus the sign. */
interface PairRead {
  a: number;
  b: number;
  sign: number;
}

/** The operand roles of a step and, per output element, what it reads. */
interface StepReads {
  /** role -> unfolded tensor */
  roles: number[];
  /** per output: single reads (linear terms, gathers, dot's plaintext terms) */
  single: Read[][];
  /** per output: products (dot, power) as indices into the roles' elements */
  pairs: PairRead[][];
}

function readsOf(s: Step, n: number): StepReads {
  const single: Read[][] = Array.from({ length: n }, () => []);
  const pairs: PairRead[][] = Array.from({ length: n }, () => []);
  const roles: number[] = [];
  const termReads = (terms: LinearTerm[], first: number) =>
    terms.forEach((term, k) => {
      roles.push(term.src);
      const e = weightedEntries(term.op);
      for (let j = 0; j < e.length; j++) single[e.out[j]].push({ role: first + k, tensor: term.src, element: e.inp[j], w: e.w[j] });
    });
  if (s.kind === 'linear') termReads(s.terms, 0);
  else if (s.kind === 'struct') {
    if (s.op.kind !== 'gather') throw new Error('unreachable: checked by tokenFoldProblem');
    roles.push(s.src);
    for (let o = 0; o < n; o++) single[o].push({ role: 0, tensor: s.src, element: s.op.index[o], w: 1 });
  } else if (s.kind === 'power') {
    roles.push(s.a, s.b);
    for (let o = 0; o < n; o++) pairs[o].push({ a: o, b: o, sign: 1 });
  } else {
    roles.push(s.a, s.b);
    const P = s.pairs;
    for (let k = 0; k < P.out.length; k++) pairs[P.out[k]].push({ a: P.a[k], b: P.b[k], sign: P.sign ? P.sign[k] : 1 });
    termReads(s.terms, 2);
  }
  return { roles, single, pairs };
}

/** The most frequent value (ties: the smallest), or 0 for none. */
function mode(values: number[]): number {
  const count = new Map<number, number>();
  let best = 0;
  let bestN = 0;
  for (const v of values) {
    const c = (count.get(v) ?? 0) + 1;
    count.set(v, c);
    if (c > bestN || (c === bestN && v < best)) [best, bestN] = [v, c];
  }
  return best;
}

class Folder {
  private tensors: TensorInfo[] = [];
  private steps: Step[] = [];
  private folded = new Map<number, number>();
  readonly maps = new Map<number, TokenMap>();
  readonly origin: number[] = [];
  /** per folded tensor: the token offsets read in a row on the way to it (its stale blocks when T does not divide B) */
  readonly shrink: number[] = [];

  constructor(
    private p: HeProgram,
    readonly T: number,
  ) {}

  /** A folded tensor for unfolded `t` with map `m`, `shrink` blocks stale. */
  place(t: number, m: TokenMap, shrink: number): number {
    const info = this.p.tensors[t];
    const id = this.tensors.length;
    this.shrink.push(shrink);
    this.tensors.push({ id, shape: [m.features], depth: info.depth, label: info.label });
    this.folded.set(t, id);
    this.maps.set(t, m);
    this.origin.push(t);
    return id;
  }

  foldedId(t: number): number {
    const id = this.folded.get(t);
    if (id === undefined) throw new Error(`internal: tensor ${t} is read before it is folded`);
    return id;
  }

  shapeOf(id: number): number[] {
    return this.tensors[id].shape;
  }

  get stepCount(): number {
    return this.steps.length;
  }

  tokenOf(t: number, e: number): number {
    return this.maps.get(t)!.token[e];
  }

  featureOf(t: number, e: number): number {
    return this.maps.get(t)!.feature[e];
  }

  /** delta: the token offset read (token + delta, mod T) */
  delta(t: number, e: number, token: number): number {
    return (this.tokenOf(t, e) - token + this.T) % this.T;
  }

  /**
   * Operand access for a step: the folded tensor itself when every read is at offset 0, else
   * a rotated-copy tensor holding each (feature, offset) the step reads. Returns the index of
   * (feature, offset) in the tensor the step reads.
   */
  operand(t: number, needs: Set<string>, nodes: string[], readDepth: number): { tensor: number; index: (f: number, d: number) => number } {
    const id = this.foldedId(t);
    if ([...needs].every((k) => k.endsWith(':0'))) return { tensor: id, index: (f) => f };
    const keys = [...needs];
    const at = new Map(keys.map((k, i) => [k, i]));
    const index = new Int32Array(keys.length);
    // in blocks until the block count is known (scaled by `result`)
    const steps = new Int32Array(keys.length);
    keys.forEach((k, i) => {
      const [f, d] = k.split(':').map(Number);
      index[i] = f;
      steps[i] = d;
    });
    const info = this.tensors[id];
    const out = this.tensors.length;
    this.shrink.push(this.shrink[id] + Math.max(...steps));
    // rotated at the level the step reads them: a key switch costs less with fewer primes
    this.tensors.push({ id: out, shape: [keys.length], depth: Math.max(info.depth, readDepth), label: `${info.label} (other tokens)` });
    this.origin.push(-1);
    this.steps.push({ kind: 'struct', out, src: id, op: { kind: 'rotate', shape: [keys.length], index, steps }, bias: null, nodes });
    return { tensor: out, index: (f, d) => at.get(`${f}:${d}`)! };
  }

  push(s: Step): void {
    this.steps.push(s);
  }

  shrinkOf(id: number): number {
    return this.shrink[id];
  }

  /** The folded tensors and steps, rotations scaled from blocks to `S` slots per block. */
  result(S: number): { tensors: TensorInfo[]; steps: Step[]; rotationSteps: number[] } {
    const rotations = new Set<number>();
    const steps = this.steps.map((s) => {
      if (s.kind !== 'struct' || s.op.kind !== 'rotate') return s;
      const scaled = s.op.steps.map((d) => d * S);
      for (const r of scaled) if (r) rotations.add(r);
      return { ...s, op: { ...s.op, steps: scaled } };
    });
    return { tensors: this.tensors, steps, rotationSteps: [...rotations].sort((a, b) => a - b) };
  }
}

/** The input's token map: token-major rows, or pulled back through the gather that reads it (patches). */
function inputMap(p: HeProgram, T: number): TokenMap {
  const shape = p.inputShape;
  const n = size(shape);
  if (shape.length === 2 && shape[0] === T) return rowMap(T, shape[1]);
  const gather = p.steps.find((s) => s.kind === 'struct' && s.src === p.input && s.op.kind === 'gather');
  if (!gather || gather.kind !== 'struct' || gather.op.kind !== 'gather') {
    throw new HepolyError(`token packing: the input ${JSON.stringify(shape)} is neither token rows [${T}, F] nor gathered into them (patches); use batch packing`);
  }
  const outShape = gather.op.shape;
  const F = outShape[outShape.length - 1];
  const token = new Int32Array(n).fill(-1);
  const feature = new Int32Array(n);
  gather.op.index.forEach((e, i) => {
    if (token[e] >= 0) throw new HepolyError('token packing: an input element is read twice by the patches; use batch packing');
    token[e] = Math.floor(i / F);
    feature[e] = i % F;
  });
  if (token.some((t) => t < 0)) throw new HepolyError('token packing: the patches leave input elements unread; use batch packing');
  return { token, feature, features: F };
}

function rowMap(T: number, F: number): TokenMap {
  const token = new Int32Array(T * F);
  const feature = new Int32Array(T * F);
  for (let i = 0; i < T * F; i++) {
    token[i] = Math.floor(i / F);
    feature[i] = i % F;
  }
  return { token, feature, features: F };
}

/** Each output's token: where its first operand sits (the most common, for sums over tokens). */
function outputTokens(f: Folder, r: StepReads, n: number): Int32Array {
  const token = new Int32Array(n);
  for (let o = 0; o < n; o++) {
    const firsts = r.pairs[o].length ? r.pairs[o].map((q) => f.tokenOf(r.roles[0], q.a)) : r.single[o].map((q) => f.tokenOf(q.tensor, q.element));
    token[o] = mode(firsts);
  }
  return token;
}

/**
 * Outputs whose reads are the same relative to their token share a folded feature: returns
 * each output's feature and one representative output per feature.
 */
function featuresByPattern(f: Folder, r: StepReads, token: Int32Array): { feature: Int32Array; rep: number[] } {
  const signature = (o: number): string => {
    const t = token[o];
    const parts = r.single[o].map((q) => `${q.role}|${f.featureOf(q.tensor, q.element)}|${f.delta(q.tensor, q.element, t)}|${q.w}`);
    for (const q of r.pairs[o]) parts.push(`p|${f.featureOf(r.roles[0], q.a)}|${f.delta(r.roles[0], q.a, t)}|${f.featureOf(r.roles[1], q.b)}|${f.delta(r.roles[1], q.b, t)}|${q.sign}`);
    return parts.sort().join(',');
  };
  const featureOfSig = new Map<string, number>();
  const feature = new Int32Array(token.length);
  const rep: number[] = [];
  for (let o = 0; o < token.length; o++) {
    const sig = signature(o);
    let k = featureOfSig.get(sig);
    if (k === undefined) {
      k = rep.length;
      featureOfSig.set(sig, k);
      rep.push(o);
    }
    feature[o] = k;
  }
  return { feature, rep };
}

type Operand = ReturnType<Folder['operand']>;

/** One operand per unfolded tensor the step reads (dot's a and b are often the same q, k, v tensor), rotated where it reads other tokens. */
function stepOperands(f: Folder, p: HeProgram, s: Step, r: StepReads, token: Int32Array, rep: number[]): Map<number, Operand> {
  const needs = r.roles.map(() => new Set<string>());
  const key = (t: number, e: number, tok: number) => `${f.featureOf(t, e)}:${f.delta(t, e, tok)}`;
  for (const o of rep) {
    for (const q of r.single[o]) needs[q.role].add(key(q.tensor, q.element, token[o]));
    for (const q of r.pairs[o]) {
      needs[0].add(key(r.roles[0], q.a, token[o]));
      needs[1].add(key(r.roles[1], q.b, token[o]));
    }
  }
  const byTensor = new Map<number, Set<string>>();
  r.roles.forEach((t, i) => byTensor.set(t, new Set([...(byTensor.get(t) ?? []), ...needs[i]])));
  // the level a step reads its operands at: one above its output (struct steps: its own)
  const readDepth = s.kind === 'struct' ? p.tensors[s.out].depth : p.tensors[s.out].depth - 1;
  return new Map([...byTensor].map(([t, need]) => [t, f.operand(t, need, s.nodes, readDepth)]));
}

/** Folds one step: output tokens, features by read pattern, operands (rotated where needed), the folded step. */
function foldStep(f: Folder, p: HeProgram, s: Step): void {
  const n = size(p.tensors[s.out].shape);
  const r = readsOf(s, n);
  const token = outputTokens(f, r, n);
  const { feature, rep } = featuresByPattern(f, r, token);
  const F = rep.length;
  const ops = stepOperands(f, p, s, r, token, rep);
  const at = (t: number, e: number, o: number) => ops.get(t)!.index(f.featureOf(t, e), f.delta(t, e, token[o]));
  const biases = foldBiases(s, n, token, feature, F, f.T);
  const shrink = Math.max(0, ...[...ops.values()].map((o) => f.shrinkOf(o.tensor)));
  const out = f.place(s.out, { token, feature, features: F }, shrink);
  const nodes = s.nodes;
  const terms = (first: number, count: number): LinearTerm[] =>
    Array.from({ length: count }, (_, k) => {
      const src = ops.get(r.roles[first + k])!.tensor;
      const inSize = f.shapeOf(src)[0];
      const kernel = new Float64Array(inSize * F);
      rep.forEach((o, j) => {
        for (const q of r.single[o]) if (q.role === first + k) kernel[at(q.tensor, q.element, o) * F + j] += q.w;
      });
      return { src, op: { kind: 'dense', inSize, units: F, kernel } };
    });
  if (s.kind === 'linear') f.push({ kind: 'linear', out, terms: terms(0, s.terms.length), ...biases, nodes });
  else if (s.kind === 'struct') {
    const index = Int32Array.from(rep, (o) => at(r.roles[0], r.single[o][0].element, o));
    f.push({ kind: 'struct', out, src: ops.get(r.roles[0])!.tensor, op: { kind: 'gather', shape: [F], index }, ...biases, nodes });
  } else {
    const pairs = foldPairs(r, rep, at);
    const a = ops.get(r.roles[0])!.tensor;
    const b = ops.get(r.roles[1])!.tensor;
    const identity = s.kind === 'power' && pairs.out.length === F && pairs.out.every((o, k) => pairs.a[k] === o && pairs.b[k] === o);
    if (identity) f.push({ kind: 'power', out, a, b, nodes });
    else f.push({ kind: 'dot', out, a, b, pairs, terms: s.kind === 'dot' ? terms(2, s.terms.length) : [], ...biases, nodes });
  }
}

function foldPairs(r: StepReads, rep: number[], at: (t: number, e: number, o: number) => number): DotPairs {
  const out: number[] = [];
  const a: number[] = [];
  const b: number[] = [];
  const sign: number[] = [];
  rep.forEach((o, j) => {
    for (const q of r.pairs[o]) {
      out.push(j);
      a.push(at(r.roles[0], q.a, o));
      b.push(at(r.roles[1], q.b, o));
      sign.push(q.sign);
    }
  });
  return { out: Int32Array.from(out), a: Int32Array.from(a), b: Int32Array.from(b), sign: sign.every((x) => x > 0) ? null : Int8Array.from(sign) };
}

/** A folded step's constants: one per feature where the tokens agree, else one per token block. */
function foldBiases(s: Step, n: number, token: Int32Array, feature: Int32Array, F: number, T: number): { bias: Float64Array | null; tokenBias?: Float64Array } {
  if (s.kind === 'power' || !s.bias) return { bias: null };
  const perToken = new Float64Array(F * T);
  const set = new Uint8Array(F * T);
  const scalar = new Float64Array(F);
  const seen = new Uint8Array(F);
  let uniform = true;
  for (let o = 0; o < n; o++) {
    const k = feature[o] * T + token[o];
    if (set[k] && perToken[k] !== s.bias[o]) throw new Error(`internal: two elements of ${s.out} fold onto one slot with different constants`);
    perToken[k] = s.bias[o];
    set[k] = 1;
    if (seen[feature[o]] && scalar[feature[o]] !== s.bias[o]) uniform = false;
    scalar[feature[o]] = s.bias[o];
    seen[feature[o]] = 1;
  }
  return uniform ? { bias: scalar } : { bias: null, tokenBias: perToken };
}

/** The batch program `p` folded onto token blocks of `slots` (see the top of the file). */
export function foldTokens(p: HeProgram, slots: number): TokenFold {
  const ok = tokenFoldProblem(p, slots);
  if (ok !== true) throw new HepolyError(ok);
  const T = tokenCount(p);
  const f = new Folder(p, T);
  const input = inputMap(p, T);
  const inputId = f.place(p.input, input, 0);
  const refreshAt = new Map((p.refreshes ?? []).map((r) => [r.before, r]));
  const refreshes: RefreshPoint[] = [];
  p.steps.forEach((s, i) => {
    const r = refreshAt.get(i);
    if (r) {
      const before = f.stepCount;
      const tensors = r.tensors.map(({ src, out }) => ({ src: f.foldedId(src), out: f.place(out, f.maps.get(src)!, f.shrinkOf(f.foldedId(src))) }));
      refreshes.push({ before, tensors, ...(r.carried ? { carried: r.carried.map((t) => f.foldedId(t)) } : {}) });
    }
    foldStep(f, p, s);
  });
  // a refresh point's `before` names the first step after it, rotated copies included
  const B = blocksFor(T, Math.max(...f.shrink));
  if (B > slots) {
    throw new HepolyError(`token packing: ${T} tokens read ${Math.max(...f.shrink)} token offsets in a row, which needs ${B} blocks of slots (block b holds token b mod ${T}); N=${slots * 2} has ${slots} slots. Use batch packing or larger --params`);
  }
  const S = slots / B;
  const { tensors, steps, rotationSteps } = f.result(S);
  const outMap = f.maps.get(p.output)!;
  const program: HeProgram = {
    ...p,
    inputShape: [input.features],
    tensors,
    steps,
    input: inputId,
    output: f.foldedId(p.output),
    tokenBlocks: { tokens: T, blocks: B },
    ...(refreshes.length ? { refreshes } : {}),
  };
  if (!refreshes.length) delete program.refreshes;
  return {
    program,
    tokens: T,
    blocks: B,
    stride: S,
    input: { token: input.token, feature: input.feature },
    output: { token: outMap.token, feature: outMap.feature },
    origin: f.origin,
    maps: f.origin.map((t) => (t >= 0 ? f.maps.get(t)! : null)),
    rotationSteps,
  };
}

/**
 * The fewest blocks (a power of two) that keep the first T blocks right after `shrink` offsets
 * read in a row: T itself when it is a power of two (the rotations wrap exactly).
 */
export function blocksFor(T: number, shrink: number): number {
  let B = 1;
  while (B < T) B *= 2;
  if (B === T) return B;
  while (B < T + shrink) B *= 2;
  return B;
}

/** Client side: sample s's element e goes to slot b * S + s of ciphertext feature(e), for every block b holding token(e). */
export function packTokens(fold: TokenFold, x: ArrayLike<number>, count: number, slots: number): Float64Array[] {
  const per = fold.input.token.length;
  const F = fold.program.inputShape[0];
  const vecs = Array.from({ length: F }, () => new Float64Array(slots));
  for (let s = 0; s < count; s++) {
    for (let e = 0; e < per; e++) {
      const v = vecs[fold.input.feature[e]];
      for (let b = fold.input.token[e]; b < fold.blocks; b += fold.tokens) v[b * fold.stride + s] = x[s * per + e];
    }
  }
  return vecs;
}

/** Client side: class k's logit of sample s from slot token(k) * S + s of ciphertext feature(k). */
export function unpackTokens(fold: TokenFold, outputs: (Float64Array | null)[], classes: number, count: number): Float64Array {
  const logits = new Float64Array(count * classes);
  for (let k = 0; k < classes; k++) {
    const v = outputs[fold.output.feature[k]];
    if (!v) continue;
    const base = fold.output.token[k] * fold.stride;
    for (let s = 0; s < count; s++) logits[s * classes + k] = v[base + s];
  }
  return logits;
}
