import type { TransformerConfig } from '../recipe/schema.js';
import { HepolyError } from '../util/errors.js';
import { type Graph, type GraphNode, type LayerSpec, type SequenceLayerSpec, INPUT, inferShapes, sequenceNode } from './graph.js';
import { toActivationSpec } from './activation.js';

/**
 * A pre-norm transformer encoder (Vaswani et al.; ViT, Dosovitskiy et al.):
 *
 *   classify (images): patchify -> token_dense (patch embedding) -> + positions
 *   lm (text):         embedding (one-hot x table)              -> + positions
 *   per block:         x = x + attention(norm(x));  x = x + mlp2(act(mlp1(norm(x))))
 *   head:              [norm] -> mean over tokens (classify) or last token (lm) -> dense
 *
 * The language model reads a window of characters and predicts the next one from the last
 * token's representation; attention is bidirectional within the window (nothing after the
 * window is in it, so no causal mask is needed for next-character prediction).
 * Node names: embed, pos, b{i}_norm1, b{i}_attn, b{i}_add1, b{i}_norm2, b{i}_mlp1, b{i}_act,
 * b{i}_mlp2, b{i}_add2, final_norm, pool, logits.
 */
export function buildTransformer(cfg: TransformerConfig, inputShape: number[], classes: number, recipeFile = 'recipe'): Graph {
  const at = (key: string) => `${recipeFile}: model.${key}`;
  if (cfg.dim % cfg.heads !== 0) {
    throw new HepolyError(`${at('heads')}: dim ${cfg.dim} is not divisible by ${cfg.heads} heads. Choose heads dividing dim (e.g. ${[1, 2, 4, 8].filter((h) => cfg.dim % h === 0).join(', ')})`);
  }
  const nodes: GraphNode[] = [];
  const seq = (name: string, layer: SequenceLayerSpec, inputs: string[]) => {
    nodes.push(sequenceNode(name, layer, inputs));
    return name;
  };
  const plain = (name: string, layer: LayerSpec, inputs: string[]) => {
    nodes.push({ name, layer, inputs });
    return name;
  };
  const norm = (name: string, from: string): string => {
    const n = typeof cfg.norm === 'string' ? { kind: cfg.norm } : cfg.norm;
    switch (n.kind) {
      case 'batchnorm':
        return plain(name, { op: 'batchnorm', momentum: 'momentum' in n ? n.momentum : 0.9, epsilon: 'epsilon' in n ? n.epsilon : 1e-3 }, [from]);
      case 'layernorm':
        return seq(name, { op: 'layernorm', epsilon: 'epsilon' in n ? n.epsilon : 1e-5, poly: null }, [from]);
      case 'poly-layernorm': {
        const range: [number, number] = 'range' in n ? [n.range[0], n.range[1]] : [0.1, 10];
        return seq(name, { op: 'layernorm', epsilon: 0, poly: { range, iterations: 'iterations' in n ? n.iterations : 5 } }, [from]);
      }
    }
  };

  let x = INPUT;
  if (cfg.task === 'classify') {
    if (inputShape.length !== 3) {
      throw new HepolyError(
        `${at('task')}: task classify (a vision transformer) needs image inputs [H, W, C], the data gives [${inputShape.join(', ')}]${inputShape.length === 1 ? '. For text (data.source: text) set model.task: lm' : ''}`,
      );
    }
    const patch = cfg.patch ?? 7;
    const [h, w] = inputShape;
    if (h % patch !== 0 || w % patch !== 0) {
      const fits = [2, 4, 7, 14].filter((p) => h % p === 0 && w % p === 0);
      throw new HepolyError(`${at('patch')}: patches of ${patch}x${patch} do not tile the ${h}x${w} images. Use a size dividing both${fits.length ? ` (e.g. ${fits.join(', ')})` : ''}`);
    }
    x = seq('patches', { op: 'patchify', size: patch }, [x]);
    x = seq('embed', { op: 'token_dense', units: cfg.dim, bias: true }, [x]);
  } else {
    if (inputShape.length !== 1) {
      throw new HepolyError(`${at('task')}: task lm needs a text data section (data.source: text) giving windows of character ids, the data gives [${inputShape.join(', ')}]. For images set model.task: classify`);
    }
    if (cfg.context !== undefined && cfg.context !== inputShape[0]) {
      throw new HepolyError(`${at('context')}: the model's context is ${cfg.context} characters but the data gives windows of ${inputShape[0]} (data.context). Make them equal, or drop model.context (it defaults to data.context)`);
    }
    if (cfg.vocab !== undefined && cfg.vocab !== classes) {
      throw new HepolyError(`${at('vocab')}: the model's vocabulary is ${cfg.vocab} characters but the text has ${classes}. Make them equal, or drop model.vocab (it defaults to the data's)`);
    }
    if (cfg.patch !== undefined) throw new HepolyError(`${at('patch')}: patches are for images (task classify); a language model has none. Remove model.patch`);
    x = seq('embed', { op: 'embedding', vocab: classes, dim: cfg.dim }, [x]);
  }
  x = seq('pos', { op: 'pos_embedding' }, [x]);
  const hidden = Math.max(1, Math.round(cfg.dim * cfg.mlp_ratio));
  const attention = cfg.attention.kind === 'softmax' ? { kind: 'softmax' as const } : { kind: 'power-softmax' as const, p: cfg.attention.p, eps: cfg.attention.eps, ...(cfg.attention.denominator ? { denominator: cfg.attention.denominator } : {}) };
  for (let b = 1; b <= cfg.layers; b++) {
    const a = seq(`b${b}_attn`, { op: 'attention', heads: cfg.heads, attention }, [norm(`b${b}_norm1`, x)]);
    x = plain(`b${b}_add1`, { op: 'add' }, [x, a]);
    let m = seq(`b${b}_mlp1`, { op: 'token_dense', units: hidden, bias: true }, [norm(`b${b}_norm2`, x)]);
    m = plain(`b${b}_act`, { op: 'activation', activation: toActivationSpec(cfg.activation) }, [m]);
    m = seq(`b${b}_mlp2`, { op: 'token_dense', units: cfg.dim, bias: true }, [m]);
    x = plain(`b${b}_add2`, { op: 'add' }, [x, m]);
  }
  if (cfg.final_norm) x = norm('final_norm', x);
  x = seq('pool', { op: 'seq_pool', mode: cfg.task === 'lm' ? 'last' : 'mean' }, [x]);
  plain('logits', { op: 'dense', units: classes, bias: true }, [x]);
  const graph: Graph = { inputShape, classes, nodes, output: 'logits' };
  try {
    inferShapes(graph);
  } catch (e) {
    throw new HepolyError(`${recipeFile}: model: ${(e as Error).message}`);
  }
  return graph;
}

export { RECIPROCAL_TOLERANCE, sequenceOpDepth, type SequenceDepth } from '../ops/sequence.js';
