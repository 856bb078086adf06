import type { CkksBackend } from '../backend.js';
import {
  type Graph,
  type GraphNode,
  type WeightMap,
  INPUT,
  inferShapes,
  isSequenceOp,
  layerOf,
  weightKey,
} from '../../models/graph.js';
import type { Ranges } from '../../train/checkpoint.js';
import { fitInvSqrt, fitReciprocal, reciprocalIterationsFor, type NewtonApprox } from '../../layers/reciprocal.js';
import { HepolyError } from '../../util/errors.js';
import { HeOps } from './ops.js';
import type { EnsureLevels } from './refresh.js';

/**
 * Encrypted evaluation of transformer graphs (the sequence ops of models/graph.ts plus dense,
 * add, batchnorm, polynomial activations), batch-packed (slot s = sample s, one ciphertext per
 * tensor element), against `CkksBackend`. It is a direct interpreter, not a compiled program:
 * each node's output ciphertexts are computed from its inputs' in graph order.
 *
 * Attention (power-softmax, per sample, per head h):
 *   q, k, v  = x Wqkv + b                     (plaintext products, 1 level; 1/sqrt(dh) folded into q)
 *   s[t][u]  = sum_c q[t][c] k[u][c]          ("attention products": ct x ct, 1 level)
 *   e        = s^p                            (power: log2 p levels)
 *   D[t]     = eps + sum_u e[t][u]            (additions)
 *   r[t]     = 1 / D[t]                       (Newton, fitted to the observed range of D: 1 + 2k levels)
 *   o[t][c]  = (sum_u e[t][u] v[u][c]) r[t]   (ct x ct: the value product, then the normalization, 1 level each)
 *   out      = o Wout + b                     (1 level)
 * The reciprocal is applied after the value product, T x dh products instead of T x T.
 *
 * The client encodes text inputs as one-hot rows ([T, vocab] values of 0/1: the embedding is
 * then a plaintext matrix product) and images as pixels; see `encodeInputs`.
 */

export type Component = 'embedding' | 'attention_products' | 'power_softmax' | 'reciprocal' | 'mlp' | 'norm' | 'head';

export interface ReciprocalChoice {
  node: string;
  /** the range the Newton start was fitted to: the observed denominator range widened by the margin */
  lo: number;
  hi: number;
  iterations: number;
  /** relative error bound of 1/D on [lo, hi] */
  errorBound: number;
  levels: number;
}

export interface SequenceEvalReport {
  /** wall-clock milliseconds per component (for the whole batch) */
  ms: Record<Component, number>;
  /** levels consumed from input to output */
  levelsUsed: number;
  /** level of each node's output (top level = the input's) */
  nodeLevels: Record<string, number>;
  reciprocals: ReciprocalChoice[];
  ctCtMults: number;
  ptMults: number;
}

export interface SequenceEvalOptions {
  /**
   * Called before every step that spends levels (see refresh.ts); without it the chain must
   * hold the whole depth. `ms()` is the time it spent, kept out of the components.
   */
  levels?: { ensure: EnsureLevels<unknown>; ms(): number };
  /** sees each node's output ciphertexts before they may be freed (for --trace) */
  onNode?: (node: string, cts: unknown[]) => void;
  /** the observed denominator range is widened to [min / margin, max * margin] (default 1.5) */
  margin?: number;
  /** relative accuracy the reciprocal is sized for (default 1e-3) */
  tolerance?: number;
  /** keep every node's output ciphertexts (for --trace) */
  keepAll?: boolean;
}

/** Newton reciprocal for a power-softmax node, from the range recorded in training. */
export function chooseReciprocal(node: string, ranges: Ranges | null, eps: number, margin = 1.5, tolerance = 1e-3): { approx: NewtonApprox; choice: ReciprocalChoice } {
  const r = ranges?.activations[`${node}/denominator`];
  if (!r) {
    throw new HepolyError(`${node}: no observed range for the power-softmax denominator (ranges.json "${node}/denominator"): retrain the checkpoint with this version, the range is recorded after the last epoch`);
  }
  const lo = Math.max(eps, r.min / margin, 1e-9);
  const hi = Math.max(lo * 1.0001, r.max * margin);
  const iterations = reciprocalIterationsFor(lo, hi, tolerance);
  const approx = fitReciprocal(lo, hi, iterations);
  return { approx, choice: { node, lo, hi, iterations, errorBound: approx.errorBound, levels: 1 + 2 * iterations } };
}

/** The plaintext values the client encrypts (one vector per input element, one slot per sample). */
export function encodeInputs(graph: Graph, x: Float32Array, count: number): { shape: number[]; values: Float64Array[] } {
  const per = graph.inputShape.reduce((a, b) => a * b, 1);
  const first = graph.nodes.find((n) => n.inputs.includes(INPUT));
  const L = first ? layerOf(first) : null;
  if (L && L.op === 'embedding') {
    const T = graph.inputShape[0];
    const values = Array.from({ length: T * L.vocab }, () => new Float64Array(count));
    for (let s = 0; s < count; s++) for (let t = 0; t < T; t++) values[t * L.vocab + x[s * per + t]][s] = 1;
    return { shape: [T, L.vocab], values };
  }
  const values = Array.from({ length: per }, (_, i) => Float64Array.from({ length: count }, (_, s) => x[s * per + i]));
  return { shape: graph.inputShape, values };
}

export interface SequenceEvalResult<C> {
  output: C[];
  report: SequenceEvalReport;
  values: Map<string, C[]>;
}

/** The whole network in one go (the simulation, tests). */
export function evaluateSequenceModel<C>(
  be: CkksBackend<C>,
  graph: Graph,
  weights: WeightMap,
  ranges: Ranges | null,
  input: C[],
  opts: SequenceEvalOptions = {},
): SequenceEvalResult<C> {
  const steps = sequenceSteps(be, graph, weights, ranges, input, opts);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * The same, awaiting `between(node)` after every node: where the real-SEAL evaluator swaps
 * its grown wasm heap for a fresh one (recycling-backend.ts) while nothing but the nodes'
 * output ciphertexts is alive.
 */
export async function evaluateSequenceModelAsync<C>(
  be: CkksBackend<C>,
  graph: Graph,
  weights: WeightMap,
  ranges: Ranges | null,
  input: C[],
  opts: SequenceEvalOptions,
  between: (node: string) => Promise<void>,
): Promise<SequenceEvalResult<C>> {
  const steps = sequenceSteps(be, graph, weights, ranges, input, opts);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    await between(r.value);
  }
}

/** The interpreter, one node per step: yields each node's name once its outputs are computed and its dead inputs freed. */
function* sequenceSteps<C>(
  be: CkksBackend<C>,
  graph: Graph,
  weights: WeightMap,
  ranges: Ranges | null,
  input: C[],
  opts: SequenceEvalOptions,
): Generator<string, SequenceEvalResult<C>, void> {
  const ops = new HeOps(be);
  const keeper = opts.levels as { ensure: EnsureLevels<C>; ms(): number } | undefined;
  /** cts with `need` levels left, the replaced ones freed when `owned` */
  const ensure = (cts: C[], need: number, at: string, owned: boolean): C[] => {
    if (!keeper) return cts;
    const out = keeper.ensure(cts, need, at);
    if (owned && out !== cts) cts.forEach((c, i) => out[i] !== c && be.free(c));
    return out;
  };
  ops.ensure = ensure;
  ops.linearAtLowest = !!keeper;
  const shapes = inferShapes(graph);
  const ms: Record<Component, number> = { embedding: 0, attention_products: 0, power_softmax: 0, reciprocal: 0, mlp: 0, norm: 0, head: 0 };
  const reciprocals: ReciprocalChoice[] = [];
  const values = new Map<string, C[]>([[INPUT, input]]);
  const nodeLevels: Record<string, number> = {};
  const top = Math.min(...present(input).map((c) => be.levelOf(c)));
  const w = (node: GraphNode, p: string) => {
    const t = weights.get(weightKey(node.name, p));
    if (!t) throw new Error(`missing weight ${weightKey(node.name, p)}`);
    return t.data;
  };
  const timed = <T>(c: Component, f: () => T): T => {
    const t0 = performance.now();
    const r0 = keeper?.ms() ?? 0;
    const r = f();
    ms[c] += performance.now() - t0 - ((keeper?.ms() ?? 0) - r0);
    return r;
  };
  /** a node's input with `need` levels; refreshed inputs replace the stored ones (other readers share them) */
  const nodeInput = (name: string, need: number, at: string): C[] => {
    const cur = values.get(name)!;
    const out = ensure(cur, need, at, name !== INPUT);
    values.set(name, out);
    return out;
  };
  const lastOnly = lastRowOnly(graph);
  /** token rows a node computes: only the last one when every reader needs no other (a language model's last position) */
  const rowsOf = (node: string, T: number): number[] => (lastOnly.has(node) ? [T - 1] : range(0, T));
  const readers = new Map<string, number>();
  for (const n of graph.nodes) for (const i of n.inputs) readers.set(i, (readers.get(i) ?? 0) + 1);

  for (const node of graph.nodes) {
    const L = layerOf(node);
    const need = levelsAtEntry(L);
    const ins = node.inputs.map((n) => (need > 0 ? nodeInput(n, need, node.name) : values.get(n)!));
    const x = ins[0];
    const inShape = shapes.get(node.inputs[0])!;
    let out: C[];
    switch (L.op) {
      case 'patchify': {
        const [H, W, Cc] = inShape;
        const s = L.size;
        out = [];
        for (let ph = 0; ph < H / s; ph++)
          for (let pw = 0; pw < W / s; pw++)
            for (let i = 0; i < s; i++) for (let j = 0; j < s; j++) for (let c = 0; c < Cc; c++) out.push(be.clone(x[((ph * s + i) * W + pw * s + j) * Cc + c]));
        break;
      }
      case 'embedding': {
        const table = w(node, 'table');
        const T = inShape[0];
        out = timed('embedding', () => {
          const o: C[] = new Array<C>(T * L.dim);
          for (const t of rowsOf(node.name, T)) place(o, t * L.dim, ops.linear(x.slice(t * L.vocab, (t + 1) * L.vocab), L.dim, (i, j) => table[i * L.dim + j], () => 0));
          return o;
        });
        break;
      }
      case 'pos_embedding': {
        const table = w(node, 'table');
        out = x.map((c, i) => ops.addConst(c, table[i]));
        break;
      }
      case 'token_dense': {
        const [T, F] = inShape;
        const k = w(node, 'kernel');
        const b = L.bias ? w(node, 'bias') : null;
        const comp: Component = node.name === 'embed' ? 'embedding' : 'mlp';
        out = timed(comp, () => {
          const o: C[] = new Array<C>(T * L.units);
          for (const t of rowsOf(node.name, T)) place(o, t * L.units, ops.linear(x.slice(t * F, (t + 1) * F), L.units, (i, j) => k[i * L.units + j], (j) => (b ? b[j] : 0)));
          return o;
        });
        break;
      }
      case 'attention': {
        if (L.attention.kind !== 'power-softmax') throw new Error(`${node.name}: softmax attention is not polynomial; train with attention: {kind: power-softmax}`);
        const { p, eps } = L.attention;
        const [T, D] = inShape;
        const H = L.heads;
        const dh = D / H;
        const kq = w(node, 'qkv_kernel');
        const bq = w(node, 'qkv_bias');
        const ko = w(node, 'out_kernel');
        const bo = w(node, 'out_bias');
        const { approx, choice } = chooseReciprocal(node.name, ranges, eps, opts.margin, opts.tolerance);
        reciprocals.push(choice);
        const scale = 1 / Math.sqrt(dh);
        const at = (step: string) => `${node.name}/${step}`;
        // the query rows this node must produce (all, or only the last for a language model's
        // last block); keys and values are needed for every token either way
        const rows = rowsOf(node.name, T);
        const ctx: C[][] = rows.map(() => new Array<C>(D));
        // one head at a time: only its q | k | v columns are alive (batch-packed tensors are
        // one ciphertext per element, memory is the limit)
        for (let h = 0; h < H; h++) {
          const qCols = range(h * dh, dh);
          const kvCols = [...range(D + h * dh, dh), ...range(2 * D + h * dh, dh)];
          const proj = (t: number, cols: number[]) =>
            ops.linear(x.slice(t * D, (t + 1) * D), cols.length, (i, j) => kq[i * 3 * D + cols[j]] * (cols[j] < D ? scale : 1), (j) => bq[cols[j]] * (cols[j] < D ? scale : 1));
          // q (1/sqrt(dh) folded into its columns) for the query rows, k | v for every token
          const qkv0 = timed('attention_products', () => [...rows.map((t) => proj(t, qCols)), ...range(0, T).map((t) => proj(t, kvCols))]);
          // scores, their power and the value product in one stretch of levels
          const flat = ensure(qkv0.flat(), 2 + powerLevels(p), at('qkv'), true);
          const q = rows.map((_, i) => flat.slice(i * dh, (i + 1) * dh));
          const kv = range(0, T).map((u) => flat.slice((rows.length + u * 2) * dh, (rows.length + u * 2 + 2) * dh));
          const e = q.map((qt) => {
            const s = timed('attention_products', () =>
              Array.from({ length: T }, (_, u) => ops.dot(qt, kv[u].slice(0, dh))),
            );
            const pw = timed('power_softmax', () => s.map((c) => ops.power(c, p)));
            s.forEach((c) => be.free(c));
            return pw;
          });
          const den = timed('power_softmax', () => e.map((row) => ops.shifted(ops.sum(row), eps)));
          const r = timed('reciprocal', () => ops.reciprocalMany(den, approx, at('reciprocal')));
          den.forEach((c) => be.free(c));
          const nums = rows.map((_, i) =>
            timed('attention_products', () => Array.from({ length: dh }, (_, c) => ops.dot(e[i], kv.map((k) => k[dh + c])))),
          );
          // one round trip for the head's numerators and reciprocals together
          const both = ensure([...nums.flat(), ...r], 1, at('normalize'), true);
          rows.forEach((_, i) => {
            const num = both.slice(i * dh, (i + 1) * dh);
            r[i] = both[rows.length * dh + i];
            timed('attention_products', () => num.forEach((n, c) => (ctx[i][h * dh + c] = ops.mul(n, r[i]))));
            num.forEach((c) => be.free(c));
          });
          e.flat().forEach((c) => be.free(c));
          r.forEach((c) => be.free(c));
          flat.forEach((c) => be.free(c));
        }
        const ctxFlat = ensure(ctx.flat(), 1, at('out'), true);
        out = timed('attention_products', () => {
          const o = new Array<C>(T * D);
          rows.forEach((t, i) => place(o, t * D, ops.linear(ctxFlat.slice(i * D, (i + 1) * D), D, (a, j) => ko[a * D + j], (j) => bo[j])));
          return o;
        });
        ctxFlat.forEach((c) => be.free(c));
        break;
      }
      case 'layernorm': {
        if (!L.poly) throw new Error(`${node.name}: exact layer normalization is not polynomial; train with norm: poly-layernorm or batchnorm`);
        const poly = L.poly;
        const [T, D] = inShape;
        const g = w(node, 'gamma');
        const b = w(node, 'beta');
        const f = fitInvSqrt(poly.range[0], poly.range[1], poly.iterations);
        out = timed('norm', () => {
          const o: C[] = new Array<C>(T * D);
          for (const t of rowsOf(node.name, T)) {
            let xc = ops.linear(x.slice(t * D, (t + 1) * D), D, (i, j) => (i === j ? 1 : 0) - 1 / D, () => 0);
            xc = ensure(xc, 2, `${node.name}/variance`, true);
            const sq = xc.map((c) => ops.square(c));
            const total = ops.sum(sq);
            const v = ops.shifted(ops.mulConst(total, 1 / D), L.epsilon);
            be.free(total);
            sq.forEach((c) => be.free(c));
            let [r] = ops.invSqrtMany([v], f, `${node.name}/inverse-sqrt`);
            [r] = ensure([r], 1, `${node.name}/scale`, true);
            xc = ensure(xc, 1, `${node.name}/scale`, true);
            const y = ensure(
              xc.map((c) => ops.mul(c, r)),
              1,
              `${node.name}/affine`,
              true,
            );
            place(o, t * D, ops.linear(y, D, (i, j) => (i === j ? g[i] : 0), (j) => b[j]));
            [...xc, ...y, v, r].forEach((c) => be.free(c));
          }
          return o;
        });
        break;
      }
      case 'seq_pool': {
        const [T, D] = inShape;
        out = timed('head', () =>
          L.mode === 'last'
            ? x.slice((T - 1) * D).map((c) => be.clone(c))
            : (() => {
                const sums = Array.from({ length: D }, (_, d) => ops.sum(Array.from({ length: T }, (_, t) => x[t * D + d])));
                const mean = ops.linear(sums, D, (i, j) => (i === j ? 1 / T : 0), () => 0);
                sums.forEach((c) => be.free(c));
                return mean;
              })(),
        );
        break;
      }
      case 'dense': {
        const k = w(node, 'kernel');
        const b = L.bias ? w(node, 'bias') : null;
        out = timed('head', () => ops.linear(x, L.units, (i, j) => k[i * L.units + j], (j) => (b ? b[j] : 0)));
        break;
      }
      case 'add':
        // only where the node computes rows: an input may hold more rows than this node needs
        out = (lastOnly.has(node.name) ? onlyLastRow(x, shapes.get(node.name)!) : x).map((c, i) => ins.slice(1).reduce((acc, other) => {
          const r = ops.add(acc, other[i]);
          if (acc !== c) be.free(acc);
          return r;
        }, c));
        break;
      case 'batchnorm': {
        const g = w(node, 'gamma');
        const b = w(node, 'beta');
        const m = w(node, 'moving_mean');
        const v = w(node, 'moving_variance');
        const C = g.length;
        out = timed('norm', () =>
          x.map((c, i) => {
            const ch = i % C;
            const s = g[ch] / Math.sqrt(v[ch] + L.epsilon);
            return ops.shifted(ops.mulConst(c, s), b[ch] - s * m[ch]);
          }),
        );
        break;
      }
      case 'activation': {
        const a = L.activation;
        if (a.kind === 'relu' || a.kind === 'gelu') throw new Error(`${node.name}: activation ${a.kind} is not polynomial`);
        const coeffs = a.kind === 'square' ? Float32Array.from([0, 0, 1]) : w(node, 'coeffs');
        // An MLP's hidden layer is the widest tensor of a block: it is refreshed and activated a
        // chunk at a time, and the last reader of its input frees each input ciphertext once
        // used, so that input, refreshed copy and output never all coexist.
        const consume = !opts.keepAll && node.inputs[0] !== INPUT && readers.get(node.inputs[0]) === 1;
        const need = a.kind === 'square' ? 2 : activationDegree(a);
        out = timed('mlp', () => {
          const o = new Array<C>(x.length);
          for (let i0 = 0; i0 < x.length; i0 += ACTIVATION_CHUNK) {
            const idx = range(i0, Math.min(ACTIVATION_CHUNK, x.length - i0)).filter((i) => x[i] !== undefined);
            const part = ensure(idx.map((i) => x[i]), need, node.name, consume);
            idx.forEach((i, k) => {
              o[i] = horner(ops, part[k], coeffs);
              // a refreshed copy is this node's own; an original only when this node is its last reader
              if (consume || part[k] !== x[i]) be.free(part[k]);
            });
          }
          return o;
        });
        if (consume) values.set(node.inputs[0], []);
        break;
      }
      case 'flatten':
        out = x.map((c) => be.clone(c));
        break;
      default:
        throw new Error(`${node.name}: layer ${L.op} is not supported by the transformer evaluator`);
    }
    values.set(node.name, out);
    nodeLevels[node.name] = top - Math.min(...present(out).map((c) => be.levelOf(c)));
    opts.onNode?.(node.name, out);
    // free what no later node reads
    if (!opts.keepAll) {
      for (const i of node.inputs) {
        const left = (readers.get(i) ?? 1) - 1;
        readers.set(i, left);
        if (left === 0 && i !== INPUT) {
          values.get(i)!.forEach((c) => be.free(c));
          values.delete(i);
        }
      }
    }
    yield node.name;
  }
  const output = values.get(graph.output)!;
  return {
    output,
    values,
    report: { ms, levelsUsed: nodeLevels[graph.output], nodeLevels, reciprocals, ctCtMults: ops.ctCt, ptMults: ops.ptMults },
  };
}

/**
 * Nodes of which only the last token row is ever read: a language model pools the last
 * position, so its last block's per-token layers (and the queries of its attention) need no
 * other row. Keys and values of an attention need every row of their input.
 */
export function lastRowOnly(graph: Graph): Set<string> {
  const readersOf = new Map<string, GraphNode[]>();
  for (const n of graph.nodes) for (const i of n.inputs) readersOf.set(i, [...(readersOf.get(i) ?? []), n]);
  const perToken = new Set(['embedding', 'pos_embedding', 'token_dense', 'batchnorm', 'activation', 'add', 'layernorm']);
  const last = new Set<string>();
  for (const n of [...graph.nodes].reverse()) {
    if (n.name === graph.output) continue;
    const rs = readersOf.get(n.name) ?? [];
    const onlyLast = rs.length > 0 && rs.every((r) => {
      const L = layerOf(r);
      return (L.op === 'seq_pool' && L.mode === 'last') || (perToken.has(L.op) && last.has(r.name));
    });
    if (onlyLast) last.add(n.name);
  }
  return last;
}

/** Ciphertexts of a tensor that were computed (rows a node skipped are holes). */
function present<C>(cts: C[]): C[] {
  return cts.filter(() => true);
}

function place<C>(into: C[], at: number, cts: C[]): void {
  cts.forEach((c, i) => (into[at + i] = c));
}

/** The same tensor with every row but the last left as holes. */
function onlyLastRow<C>(cts: C[], shape: number[]): C[] {
  const F = shape[shape.length - 1];
  const out = new Array<C>(cts.length);
  place(out, cts.length - F, cts.slice(cts.length - F));
  return out;
}

/** Levels a node spends before any internal refresh point (attention and layernorm have their own). */
function levelsAtEntry(L: ReturnType<typeof layerOf>): number {
  switch (L.op) {
    case 'embedding':
    case 'token_dense':
    case 'dense':
    case 'batchnorm':
    case 'attention':
    case 'layernorm':
      return 1;
    case 'seq_pool':
      return L.mode === 'last' ? 0 : 1;
    case 'activation':
      // refreshed chunk by chunk inside the node
      return 0;
    default:
      return 0;
  }
}

function activationDegree(a: { kind: string; degree?: number }): number {
  return a.kind === 'quad' ? 2 : (a.degree ?? 2);
}

/** Levels `HeOps.power` spends for x^p. */
export function powerLevels(p: number): number {
  let levels = 0;
  let resultLevel = -1;
  let baseLevel = 0;
  for (let e = p; e > 0; e >>= 1) {
    if (e & 1) resultLevel = resultLevel < 0 ? baseLevel : Math.max(resultLevel, baseLevel) + 1;
    if (e > 1) baseLevel++;
  }
  levels = resultLevel;
  return levels;
}

/** ciphertexts an activation refreshes and evaluates at a time */
const ACTIVATION_CHUNK = 256;

function range(start: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => start + i);
}

/** c0 + c1 x + ... by x (c1 + x (c2 + ...)): a quad a x^2 + b x + c costs two levels. */
function horner<C>(ops: HeOps<C>, x: C, coeffs: ArrayLike<number>): C {
  const n = coeffs.length - 1;
  if (n === 0) throw new Error('internal: constant activation');
  let acc = ops.shifted(ops.mulConst(x, coeffs[n]), coeffs[n - 1]);
  for (let i = n - 2; i >= 0; i--) {
    const next = ops.shifted(ops.mul(acc, x), coeffs[i]);
    ops.be.free(acc);
    acc = next;
  }
  return acc;
}

/** Whether a graph needs this evaluator (it holds sequence ops) rather than the compiled program. */
export function isSequenceGraph(graph: Graph): boolean {
  return graph.nodes.some((n) => isSequenceOp(layerOf(n)));
}
