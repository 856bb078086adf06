/**
 * The network description shared by every interpreter: the tfjs trainer
 * (`models/tf-interpreter.ts`) and the CKKS evaluator (`he/`). A recipe's `model` section is
 * turned into a `Graph` once (`models/build.ts`); checkpoints store the graph and a flat map
 * of named weights, so both interpreters read exactly the same network.
 *
 * Conventions (the HE packing relies on them):
 * - per-sample tensors are NHWC without the batch axis: images `[H, W, C]`, vectors `[F]`;
 * - `flatten` is row-major over (h, w, c);
 * - dense kernel `[in, units]`, conv kernel `[k, k, cin, cout]` (HWIO), both `y = x*W + b`;
 * - polynomial coefficients are ascending: `y = c0 + c1 x + c2 x^2 + ...`.
 */

export type ActivationSpec =
  /** trainable a*x^2 + b*x + c (weights `coeffs` = [c, b, a]) */
  | { kind: 'quad' }
  /** trainable polynomial of the given degree (weights `coeffs`, degree+1 values) */
  | { kind: 'poly'; degree: number }
  /** fixed x^2, no weights */
  | { kind: 'square' }
  /** fixed polynomial fit of ReLU on `range` (weights `coeffs`, trainable if asked) */
  | { kind: 'relu-approx'; degree: number; range: [number, number]; trainable: boolean }
  /** not polynomial: baselines and teachers only, refused by the HE evaluator */
  | { kind: 'relu' };

export type LayerSpec =
  | { op: 'dense'; units: number; bias: boolean }
  | {
      op: 'conv2d';
      filters: number;
      kernel: number;
      stride: number;
      padding: 'same' | 'valid';
      bias: boolean;
      /** Dirac parameterization: effective kernel = W + alpha * identity (weights `alpha`, per output channel) */
      dirac?: boolean;
    }
  | { op: 'activation'; activation: ActivationSpec }
  | { op: 'avgpool'; size: number; stride: number }
  | { op: 'maxpool'; size: number; stride: number }
  | { op: 'global_avgpool' }
  | { op: 'batchnorm'; momentum: number; epsilon: number }
  | { op: 'flatten' }
  /** zero padding of H and W (e.g. 28x28 -> 32x32) */
  | { op: 'pad'; top: number; bottom: number; left: number; right: number }
  /** element-wise sum of all inputs (residual connections) */
  | { op: 'add' };

export type Op = LayerSpec['op'];

export interface GraphNode {
  name: string;
  layer: LayerSpec;
  /** names of the nodes feeding this one; `'input'` is the network input */
  inputs: string[];
}

export interface Graph {
  /** per-sample input shape, NHWC without batch */
  inputShape: number[];
  /** number of output classes (logits) */
  classes: number;
  /** topologically ordered */
  nodes: GraphNode[];
  /** name of the node whose output is the logits */
  output: string;
}

export const INPUT = 'input';

export interface WeightTensor {
  shape: number[];
  data: Float32Array;
}

/** weights keyed `${node}/${param}`, e.g. `conv1/kernel`, `act1/coeffs`, `bn1/moving_mean` */
export type WeightMap = Map<string, WeightTensor>;

export function weightKey(node: string, param: string): string {
  return `${node}/${param}`;
}

/** Number of polynomial coefficients an activation carries as weights (0 for fixed ones). */
export function activationCoeffCount(a: ActivationSpec): number {
  switch (a.kind) {
    case 'quad':
      return 3;
    case 'poly':
    case 'relu-approx':
      return a.degree + 1;
    case 'square':
    case 'relu':
      return 0;
  }
}

/** Multiplicative depth of one activation under CKKS (levels consumed). */
export function activationDepth(a: ActivationSpec): number {
  switch (a.kind) {
    case 'quad':
    case 'square':
      return 1;
    case 'poly':
    case 'relu-approx':
      return Math.ceil(Math.log2(Math.max(2, a.degree)));
    case 'relu':
      return Infinity;
  }
}

export function isPolynomial(layer: LayerSpec): boolean {
  if (layer.op === 'maxpool') return false;
  if (layer.op === 'activation') return layer.activation.kind !== 'relu';
  return true;
}

/** Output shape of every node, computed from the input shape and the layer specs. */
export function inferShapes(graph: Graph): Map<string, number[]> {
  const shapes = new Map<string, number[]>([[INPUT, graph.inputShape]]);
  for (const node of graph.nodes) {
    const ins = node.inputs.map((n) => {
      const s = shapes.get(n);
      if (!s) throw new Error(`graph: node ${node.name} reads ${n}, which is not defined before it`);
      return s;
    });
    shapes.set(node.name, outputShape(node, ins));
  }
  return shapes;
}

function outputShape(node: GraphNode, ins: number[][]): number[] {
  const x = ins[0];
  const L = node.layer;
  const need3 = () => {
    if (x.length !== 3) {
      throw new Error(`layer ${node.name} (${L.op}) needs an image input [H, W, C], got [${x.join(', ')}]`);
    }
  };
  switch (L.op) {
    case 'dense':
      if (x.length !== 1) {
        throw new Error(`layer ${node.name} (dense) needs a flat input, got [${x.join(', ')}]: add a flatten layer before it`);
      }
      return [L.units];
    case 'conv2d': {
      need3();
      const [h, w] = x;
      const oh = L.padding === 'same' ? Math.ceil(h / L.stride) : Math.floor((h - L.kernel) / L.stride) + 1;
      const ow = L.padding === 'same' ? Math.ceil(w / L.stride) : Math.floor((w - L.kernel) / L.stride) + 1;
      if (oh < 1 || ow < 1) throw new Error(`layer ${node.name} (conv2d): kernel ${L.kernel} does not fit input [${x.join(', ')}]`);
      return [oh, ow, L.filters];
    }
    case 'avgpool':
    case 'maxpool': {
      need3();
      const oh = Math.floor((x[0] - L.size) / L.stride) + 1;
      const ow = Math.floor((x[1] - L.size) / L.stride) + 1;
      if (oh < 1 || ow < 1) throw new Error(`layer ${node.name} (${L.op}): window ${L.size} does not fit input [${x.join(', ')}]`);
      return [oh, ow, x[2]];
    }
    case 'global_avgpool':
      need3();
      return [x[2]];
    case 'flatten':
      return [x.reduce((a, b) => a * b, 1)];
    case 'pad':
      need3();
      return [x[0] + L.top + L.bottom, x[1] + L.left + L.right, x[2]];
    case 'add':
      for (const s of ins) {
        if (s.join(',') !== x.join(',')) {
          throw new Error(`layer ${node.name} (add): inputs have different shapes [${ins.map((i) => i.join('x')).join('] vs [')}]`);
        }
      }
      return x;
    case 'activation':
    case 'batchnorm':
      return x;
  }
}

/** Shapes of the weights a node owns, keyed by param name. */
export function paramShapes(node: GraphNode, inShape: number[]): Record<string, number[]> {
  const L = node.layer;
  switch (L.op) {
    case 'dense':
      return { kernel: [inShape[0], L.units], ...(L.bias ? { bias: [L.units] } : {}) };
    case 'conv2d':
      return {
        kernel: [L.kernel, L.kernel, inShape[2], L.filters],
        ...(L.bias ? { bias: [L.filters] } : {}),
        ...(L.dirac ? { alpha: [L.filters] } : {}),
      };
    case 'activation': {
      const n = activationCoeffCount(L.activation);
      return n > 0 ? { coeffs: [n] } : {};
    }
    case 'batchnorm': {
      const c = inShape[inShape.length - 1];
      return { gamma: [c], beta: [c], moving_mean: [c], moving_variance: [c] };
    }
    default:
      return {};
  }
}

/** Parameters that the optimizer does not update. */
export function isTrainableParam(node: GraphNode, param: string): boolean {
  if (node.layer.op === 'batchnorm') return param === 'gamma' || param === 'beta';
  if (node.layer.op === 'activation' && node.layer.activation.kind === 'relu-approx') return node.layer.activation.trainable;
  return true;
}

export function countParams(graph: Graph): number {
  const shapes = inferShapes(graph);
  let n = 0;
  for (const node of graph.nodes) {
    const ps = paramShapes(node, shapes.get(node.inputs[0])!);
    for (const s of Object.values(ps)) n += s.reduce((a, b) => a * b, 1);
  }
  return n;
}
