import { type Graph, type GraphNode, type WeightMap, INPUT, inferShapes, weightKey } from '../models/graph.js';
import { opOf } from '../ops/registry.js';
import { type LevelContext, type LowerOps, type ProductPairs } from '../ops/types.js';
import { HepolyError } from '../util/errors.js';
import type { HeProgram, LayerBudget, StructOp, Step, TensorInfo, WeightedOp } from './program.js';
import { structOutShape, weightedOutShape } from './program.js';
import { size } from './tensor-ops.js';
import {
  type ChainOp,
  type Expr,
  type Term,
  affineOf,
  applyWeighted,
  copyTerm,
  foldInputFactors,
  foldOutputFactors,
  identity,
  isOnes,
  scaleExpr,
  structExpr,
  sumExprs,
  tailBeforePost,
} from './expr.js';

/**
 * Graph + weights -> HE program. The idea: between two nonlinear points (activations) every
 * layer is affine, so the compiler carries each node's value as an *affine expression* over
 * already-encrypted tensors, `sum_t chain_t(src_t) + bias`, and only turns it into ciphertexts
 * (one level) when an activation or the output needs it. On the way:
 * - batchnorm and avgpool's 1/size^2 become per-channel factors folded into the neighbouring
 *   dense/conv kernel; pool sums stay additions;
 * - a quad a x^2 + b x + c is rewritten a (x + b/2a)^2 + (c - b^2/4a): the shift joins the
 *   previous layer's bias, the square costs the one level, and a and the constant fold into
 *   the next layer's weights and bias. So a quad costs exactly one ciphertext square;
 * - higher-degree polynomials use a depth-optimal power tree and fold their coefficients the
 *   same way.
 */


/** A quad's shift b/2a beyond this is folded as two terms (x^2 and x) instead. */
const MAX_SQUARE_SHIFT = 64;

export class Lowering {
  private tensors: TensorInfo[] = [];
  private steps: Step[] = [];
  private layers = new Map<string, LayerBudget>();
  private shapes: Map<string, number[]>;
  private input = -1;
  /** product operands used more than once (a Newton iteration's argument) are materialized once */
  private materialized = new WeakMap<Expr, number>();
  private inputEncoding: HeProgram['inputEncoding'];

  constructor(
    private graph: Graph,
    private weights: WeightMap,
    private source: string,
    private ranges: LevelContext['ranges'] = null,
  ) {
    try {
      this.shapes = inferShapes(graph);
    } catch (e) {
      throw new HepolyError(`${source}: the network graph is inconsistent (${(e as Error).message}). Retrain the checkpoint`);
    }
  }

  run(): HeProgram {
    const input = this.newTensor(this.graph.inputShape, 0, 'input');
    this.input = input;
    const exprs = new Map<string, Expr>([[INPUT, identity(input, this.graph.inputShape)]]);
    for (const node of this.graph.nodes) {
      this.layers.set(node.name, { node: node.name, op: describeOp(node), levels: 0, how: 'folded' });
      const ins = node.inputs.map((n) => {
        const e = exprs.get(n);
        if (!e) throw new HepolyError(`${this.source}: layer ${node.name} reads ${n}, which is not defined before it. Retrain the checkpoint`);
        return e;
      });
      exprs.set(node.name, this.layer(node, ins));
    }
    const out = exprs.get(this.graph.output);
    if (!out) throw new HepolyError(`${this.source}: the graph's output ${this.graph.output} is not a layer. Retrain the checkpoint`);
    const output = this.materialize(out, `logits (${this.graph.output})`);
    return {
      // the encrypted input: the graph's, or its client-side encoding (one-hot token rows)
      inputShape: this.tensors[input].shape,
      classes: this.graph.classes,
      tensors: this.tensors,
      steps: this.steps,
      input,
      output,
      depth: this.tensors[output].depth,
      layers: [...this.layers.values()],
      ...(this.inputEncoding ? { inputEncoding: this.inputEncoding } : {}),
    };
  }

  private w(node: GraphNode, param: string): Float64Array {
    const t = this.weights.get(weightKey(node.name, param));
    if (!t) throw new HepolyError(`${this.source}: weight ${weightKey(node.name, param)} is missing. Retrain the checkpoint`);
    return Float64Array.from(t.data);
  }

  /** A node lowered by its op's `lowerHE` face, on the affine expressions of its inputs. */
  private layer(node: GraphNode, ins: Expr[]): Expr {
    const lower = opOf(node).lowerHE;
    return lower({
      layer: node.layer,
      node: node.name,
      ins,
      inShapes: node.inputs.map((n) => this.shapes.get(n)!),
      w: (param) => this.w(node, param),
      he: this.lowerOps(node.name),
      ranges: this.ranges,
    }) as Expr;
  }

  /** What an op's lowering may append, on behalf of `node`. */
  private lowerOps(node: string): LowerOps {
    return {
      weighted: (x, op, bias) => this.weighted(x as Expr, op, node, bias),
      polynomial: (x, coeffs) => this.polynomial(x as Expr, coeffs, node),
      struct: (x, op) => structExpr(x as Expr, op, node),
      affine: (x, factors, shift) => {
        const e = scaleExpr(x as Expr, factors, node);
        for (let i = 0; i < e.bias.length; i++) e.bias[i] += shift[i];
        return e;
      },
      sum: (xs) => sumExprs(xs as Expr[], node),
      product: (a, b, pairs, outShape, extra) => this.product(a as Expr, b as Expr, pairs, outShape, node, extra as ProductExtra | undefined),
      oneHotInput: (x, vocab) => this.oneHotInput(x as Expr, vocab, node),
    };
  }

  /** A dot step: both operands materialized, the signed pair products summed, one level. */
  private product(a: Expr, b: Expr, pairs: ProductPairs, outShape: number[], node: string, extra?: ProductExtra): Expr {
    const ta = this.operand(a, node);
    const tb = this.operand(b, node);
    const plus = extra?.plus ? { src: this.operand(extra.plus.x, node), factors: extra.plus.factors } : null;
    const sources = [ta, tb, ...(plus ? [plus.src] : [])];
    const depth = Math.max(...sources.map((t) => this.tensors[t].depth)) + 1;
    const out = this.newTensor(outShape, depth, `${node} ${extra?.role ?? 'products'}`);
    const bias = extra?.bias && extra.bias.some((v) => v !== 0) ? extra.bias : null;
    const terms = plus ? [{ src: plus.src, op: { kind: 'scale' as const, factors: plus.factors } }] : [];
    this.steps.push({ kind: 'dot', out, a: ta, b: tb, pairs, terms, bias, nodes: [node] });
    return identity(out, outShape);
  }

  private operand(e: Expr, node: string): number {
    let t = this.materialized.get(e);
    if (t === undefined) {
      t = this.materialize(e, `${node} product operand`);
      this.materialized.set(e, t);
    }
    return t;
  }

  /** Token ids become one-hot rows on the client, so the embedding is a plaintext product. */
  private oneHotInput(x: Expr, vocab: number, node: string): Expr {
    const t = x.terms[0];
    const raw = x.terms.length === 1 && t.src === this.input && !t.ops.length && isOnes(t.tail) && x.bias.every((v) => v === 0);
    if (!raw) throw new HepolyError(`${this.source}: layer ${node} reads token ids, so it must be the network's first layer. Retrain the checkpoint`);
    const shape = [...this.tensors[this.input].shape, vocab];
    this.tensors[this.input].shape = shape;
    this.inputEncoding = { kind: 'one-hot', vocab };
    return identity(this.input, shape);
  }

  /** Appends a dense/conv; materializes first if a term already went through one (two per-token layers compose). */
  private weighted(x: Expr, op: WeightedOp, node: string, bias: Float64Array | null): Expr {
    let e = x;
    if (op.kind === 'tokens' && e.terms.every((t) => composableTokens(t, op))) return this.composeTokens(e, op, node, bias);
    if (e.terms.some((t) => t.ops.some((o) => o.kind === 'weighted'))) {
      const t = this.materialize(e, `${node} input`);
      e = identity(t, e.shape);
    }
    const outShape = weightedOutShape(op, e.shape);
    const terms = e.terms.map((t) => {
      const term = copyTerm(t);
      let k = op;
      if (term.tail) {
        const folded = foldInputFactors(op, term.tail);
        if (folded) k = folded;
        else term.ops.push({ kind: 'weighted', op: { kind: 'scale', factors: term.tail }, node });
        term.tail = null;
      }
      term.ops.push({ kind: 'weighted', op: k, node });
      term.shape = outShape;
      return term;
    });
    const b = applyWeighted(op, e.bias, e.shape);
    if (bias) for (let i = 0; i < b.length; i++) b[i] += bias[i % bias.length];
    return { shape: outShape, terms, bias: b, nodes: [...e.nodes, node] };
  }

  /**
   * A per-token layer after per-token layers: each term's last kernel times this one, one
   * plaintext product instead of two (layernorm's centering after the attention projection).
   */
  private composeTokens(e: Expr, op: Extract<WeightedOp, { kind: 'tokens' }>, node: string, bias: Float64Array | null): Expr {
    const outShape = weightedOutShape(op, e.shape);
    const terms = e.terms.map((t) => {
      const term = copyTerm(t);
      const last = term.ops.length ? term.ops[term.ops.length - 1] : null;
      if (last && last.kind === 'weighted' && last.op.kind === 'tokens') {
        const inner = term.tail ? foldOutputFactors(last.op, term.tail)! : last.op;
        term.ops[term.ops.length - 1] = { kind: 'weighted', op: composeKernels(inner as typeof op, op), node };
      } else {
        const k = term.tail ? foldInputFactors(op, term.tail)! : op;
        term.ops.push({ kind: 'weighted', op: k, node });
      }
      term.tail = null;
      term.shape = outShape;
      return term;
    });
    const b = applyWeighted(op, e.bias, e.shape);
    if (bias) for (let i = 0; i < b.length; i++) b[i] += bias[i % bias.length];
    return { shape: outShape, terms, bias: b, nodes: [...e.nodes, node] };
  }

  private polynomial(x: Expr, coeffsIn: Float64Array, node: string): Expr {
    let d = coeffsIn.length - 1;
    while (d > 0 && coeffsIn[d] === 0) d--;
    const c = coeffsIn.subarray(0, d + 1);
    const n = size(x.shape);
    if (d === 0 || (d === 1 && c[1] === 0)) {
      throw new HepolyError(`${this.source}: activation ${node} has coefficients [${Array.from(coeffsIn).join(', ')}]: it is a constant, so the network ignores its input. Retrain the checkpoint`);
    }
    if (d === 1) {
      // linear activation: no level at all
      const e = scaleExpr(x, new Float64Array(n).fill(c[1]), node);
      for (let i = 0; i < n; i++) e.bias[i] += c[0];
      return e;
    }
    const budget = this.layers.get(node)!;
    if (d === 2) {
      const [c0, b, a] = c;
      const shift = b / (2 * a);
      if (!this.isFree(x) && Math.abs(shift) <= MAX_SQUARE_SHIFT) {
        const shifted = { ...x, terms: x.terms.map(copyTerm), bias: x.bias.map((v) => v + shift) };
        const t = this.materialize(shifted, `${node} input + ${fmt(shift)}`);
        const sq = this.power(t, t, `(${node} input + ${fmt(shift)})^2`, node);
        budget.how = `square of (x + ${fmt(shift)}), a=${fmt(a)} and ${fmt(c0 - (b * b) / (4 * a))} folded into the next layer`;
        return affineOf([[sq, a]], c0 - (b * b) / (4 * a), x.shape, node);
      }
      const t = this.materialize(x, `${node} input`);
      const sq = this.power(t, t, `${node} input^2`, node);
      if (b === 0) {
        budget.how = 'square, coefficients folded into the next layer';
        return affineOf([[sq, a]], c0, x.shape, node);
      }
      budget.how = 'square, coefficients folded into the next layer (x^2 and x terms)';
      return affineOf(
        [
          [sq, a],
          [t, b],
        ],
        c0,
        x.shape,
        node,
      );
    }
    const t = this.materialize(x, `${node} input`);
    const pw = new Map<number, number>([[1, t]]);
    const get = (k: number): number => {
      const have = pw.get(k);
      if (have !== undefined) return have;
      const h = 2 ** Math.floor(Math.log2(k));
      const id = h === k ? this.power(get(k / 2), get(k / 2), `${node} input^${k}`, node) : this.power(get(h), get(k - h), `${node} input^${k}`, node);
      pw.set(k, id);
      return id;
    };
    const pairs: [number, number][] = [];
    for (let k = 1; k <= d; k++) if (c[k] !== 0) pairs.push([get(k), c[k]]);
    budget.how = `powers up to x^${d} (depth ${Math.ceil(Math.log2(d))}), coefficients folded into the next layer`;
    return affineOf(pairs, c[0], x.shape, node);
  }

  /** True when materializing costs nothing: one term, relabelings only, no factor, no bias. */
  private isFree(e: Expr): boolean {
    if (e.terms.length !== 1) return false;
    const t = e.terms[0];
    const relabelsOnly = t.ops.every((o) => o.kind === 'struct' && (o.op.kind === 'flatten' || o.op.kind === 'pad'));
    return relabelsOnly && isOnes(t.tail) && e.bias.every((v) => v === 0);
  }

  private newTensor(shape: number[], depth: number, label: string): number {
    const id = this.tensors.length;
    this.tensors.push({ id, shape, depth, label });
    return id;
  }

  private power(a: number, b: number, label: string, node: string): number {
    const depth = Math.max(this.tensors[a].depth, this.tensors[b].depth) + 1;
    const out = this.newTensor(this.tensors[a].shape, depth, label);
    this.steps.push({ kind: 'power', out, a, b, nodes: [node] });
    return out;
  }

  private struct(src: number, op: StructOp, node: string, bias: Float64Array | null, label: string): number {
    const shape = structOutShape(op, this.tensors[src].shape);
    const out = this.newTensor(shape, this.tensors[src].depth, label);
    this.steps.push({ kind: 'struct', out, src, op, bias, nodes: [node] });
    return out;
  }

  /** Turns an affine expression into a tensor of ciphertexts (one level unless free). */
  private materialize(e: Expr, label: string): number {
    if (!e.terms.length) {
      throw new HepolyError(`${this.source}: ${label} does not depend on the input (all weights zero). Retrain the checkpoint`);
    }
    const biasOrNull = e.bias.some((v) => v !== 0) ? e.bias : null;
    if (e.terms.length === 1 && !e.terms[0].ops.some((o) => o.kind === 'weighted') && isOnes(e.terms[0].tail) && !biasOrNull) {
      const t = e.terms[0];
      let id = t.src;
      t.ops.forEach((o, i) => {
        if (o.kind === 'struct') id = this.struct(id, o.op, o.node, null, i === t.ops.length - 1 ? label : `${o.node} output`);
      });
      return id;
    }
    const parts = e.terms.map((t) => this.realizeTerm(t));
    const postKey = (p: StructOp[]) => JSON.stringify(p);
    const samePost = parts.every((p) => postKey(p.post) === postKey(parts[0].post));
    if (!samePost) {
      const ids = e.terms.map((t) => this.materialize({ shape: t.shape, terms: [t], bias: new Float64Array(size(t.shape)), nodes: e.nodes }, `${label} (part)`));
      return this.materialize(
        { shape: e.shape, terms: ids.map((id) => identity(id, e.shape).terms[0]), bias: e.bias, nodes: e.nodes },
        label,
      );
    }
    const post = parts[0].post;
    const depth = Math.max(...parts.map((p) => this.tensors[p.src].depth)) + 1;
    const linShape = weightedOutShape(parts[0].op, this.tensors[parts[0].src].shape);
    const linOut = this.newTensor(linShape, depth, post.length ? `${label} (before ${post.map((p) => p.kind).join(', ')})` : label);
    const nodes = [...new Set([...e.nodes, ...e.terms.flatMap((t) => t.ops.map((o) => o.node))])];
    this.steps.push({
      kind: 'linear',
      out: linOut,
      terms: parts.map((p) => ({ src: p.src, op: p.op })),
      bias: post.length ? null : biasOrNull,
      nodes,
    });
    let id = linOut;
    post.forEach((op, i) => {
      const last = i === post.length - 1;
      id = this.struct(id, op, nodes[nodes.length - 1], last ? biasOrNull : null, last ? label : `${label} (partial)`);
    });
    return id;
  }

  /**
   * One term as (source tensor, weighted op, struct ops after it). Struct ops before the
   * first weighted op become struct steps; a chain with several weighted ops (only when a
   * factor could not be folded) is split into several linear steps.
   */
  private realizeTerm(t: Term): { src: number; op: WeightedOp; post: StructOp[] } {
    let src = t.src;
    let shape = this.tensors[src].shape;
    let i = 0;
    const ops = t.ops;
    // struct ops before the first weighted op: additions on the source
    for (; i < ops.length && ops[i].kind === 'struct'; i++) {
      const o = ops[i] as Extract<ChainOp, { kind: 'struct' }>;
      src = this.struct(src, o.op, o.node, null, `${o.node} output`);
      shape = this.tensors[src].shape;
    }
    const weightedIdx: number[] = [];
    for (let j = i; j < ops.length; j++) if (ops[j].kind === 'weighted') weightedIdx.push(j);
    // every weighted op but the last is materialized (one level each)
    for (let w = 0; w < weightedIdx.length - 1; w++) {
      const from = weightedIdx[w];
      const to = weightedIdx[w + 1];
      const seg: Term = { src, ops: ops.slice(from, to), tail: null, shape: [] };
      seg.shape = this.chainShape(seg);
      src = this.materialize({ shape: seg.shape, terms: [seg], bias: new Float64Array(size(seg.shape)), nodes: [] }, `${ops[from].node} output`);
      shape = this.tensors[src].shape;
      i = to;
    }
    if (!weightedIdx.length) {
      return { src, op: { kind: 'scale', factors: t.tail ? t.tail : new Float64Array(size(shape)).fill(1) }, post: [] };
    }
    let op = (ops[i] as Extract<ChainOp, { kind: 'weighted' }>).op;
    const post = ops.slice(i + 1).map((o) => (o as Extract<ChainOp, { kind: 'struct' }>).op);
    if (t.tail && !isOnes(t.tail)) {
      const back = tailBeforePost(t.tail, post, weightedOutShape(op, shape));
      const folded = back ? foldOutputFactors(op, back) : null;
      if (folded) op = folded;
      else {
        // cannot fold: materialize the chain, then a separate diagonal
        const inner: Term = { src, ops: ops.slice(i), tail: null, shape: t.shape };
        const mid = this.materialize({ shape: t.shape, terms: [inner], bias: new Float64Array(size(t.shape)), nodes: [] }, 'unfolded factor input');
        return { src: mid, op: { kind: 'scale', factors: t.tail }, post: [] };
      }
    }
    return { src, op, post };
  }

  private chainShape(t: Term): number[] {
    let shape = this.tensors[t.src].shape;
    for (const o of t.ops) shape = o.kind === 'struct' ? structOutShape(o.op, shape) : weightedOutShape(o.op, shape);
    return shape;
  }

}

type ProductExtra = { plus?: { x: Expr; factors: Float64Array }; bias?: Float64Array; role?: string };

/**
 * A term a per-token layer can be composed onto: no weighted op yet, or a chain ending in a
 * per-token kernel of the same token count with foldable factors (no struct op after it).
 */
function composableTokens(t: Term, op: Extract<WeightedOp, { kind: 'tokens' }>): boolean {
  const weighted = t.ops.filter((o) => o.kind === 'weighted');
  if (!weighted.length) return !t.tail || foldInputFactors(op, t.tail) !== null;
  const last = t.ops[t.ops.length - 1];
  if (weighted.length !== 1 || last.kind !== 'weighted' || last.op.kind !== 'tokens' || last.op.tokens !== op.tokens) return false;
  return !t.tail || foldOutputFactors(last.op, t.tail) !== null;
}

/** x A B as one per-token kernel: [in, mid] times [mid, out]. */
function composeKernels(a: Extract<WeightedOp, { kind: 'tokens' }>, b: Extract<WeightedOp, { kind: 'tokens' }>): WeightedOp {
  const k = new Float64Array(a.inSize * b.units);
  for (let i = 0; i < a.inSize; i++)
    for (let m = 0; m < a.units; m++) {
      const v = a.kernel[i * a.units + m];
      if (v !== 0) for (let j = 0; j < b.units; j++) k[i * b.units + j] += v * b.kernel[m * b.units + j];
    }
  return { kind: 'tokens', tokens: a.tokens, inSize: a.inSize, units: b.units, kernel: k };
}

function describeOp(node: GraphNode): string {
  return `${node.layer.op} ${opOf(node).describe(node.layer)}`.trim();
}

function fmt(v: number): string {
  return Number(v.toPrecision(4)).toString();
}
