import type { ModelConfig } from '../recipe/schema.js';
import { HepolyError } from '../util/errors.js';
import { type ActivationSpec, type Graph, type GraphNode, type LayerSpec, INPUT } from './graph.js';
import { toActivationSpec } from './activation.js';

type ResnetConfig = Extract<ModelConfig, { kind: 'resnet' }>;

/**
 * A CIFAR-style ResNet (He et al.): stem conv3x3 -> BN -> act, three stages of n basic
 * blocks (conv3x3 -> BN -> act -> conv3x3 -> BN, plus a shortcut, -> BN -> act), the first block of
 * stages 2 and 3 with stride 2, then global average pooling and a dense classifier.
 * depth = 6n + 2. With `skip`:
 *   standard      identity shortcut, 1x1 stride-2 conv + BN where the shape changes;
 *   dirac         no shortcut adds: each stride-1 3x3 conv with equal in/out channels is
 *                 parameterized alpha*I + W, which folds into a single conv for inference;
 *   shared-source each block of a stage adds the stage's source (its input, projected once
 *                 when the stage changes shape) instead of its own input.
 */
export function buildResnet(cfg: ResnetConfig, inputShape: number[], classes: number, recipeFile = 'recipe'): Graph {
  if (inputShape.length !== 3) {
    throw new HepolyError(`${recipeFile}: model.kind: a resnet needs image inputs [H, W, C], got [${inputShape.join(', ')}]. For CSV data set data.shape`);
  }
  const act: ActivationSpec = toActivationSpec(cfg.activation);
  const n = (cfg.depth - 2) / 6;
  const nodes: GraphNode[] = [];
  const add = (name: string, layer: LayerSpec, inputs: string[]): string => {
    nodes.push({ name, layer, inputs });
    return name;
  };
  const conv = (name: string, from: string, filters: number, kernel: number, stride: number, dirac = false) =>
    add(name, { op: 'conv2d', filters, kernel, stride, padding: 'same', bias: false, ...(dirac ? { dirac: true } : {}) }, [from]);
  const bn = (name: string, from: string) => add(name, { op: 'batchnorm', momentum: 0.9, epsilon: 1e-3 }, [from]);
  const activation = (name: string, from: string) => add(name, { op: 'activation', activation: act }, [from]);

  let x = INPUT;
  if (cfg.pad_to !== undefined) {
    const [h, w] = inputShape;
    if (cfg.pad_to < h || cfg.pad_to < w) throw new HepolyError(`${recipeFile}: model.pad_to: ${cfg.pad_to} is smaller than the input [${h}, ${w}]`);
    const dh = cfg.pad_to - h;
    const dw = cfg.pad_to - w;
    x = add('pad', { op: 'pad', top: Math.floor(dh / 2), bottom: dh - Math.floor(dh / 2), left: Math.floor(dw / 2), right: dw - Math.floor(dw / 2) }, [x]);
  }
  const [w0] = cfg.widths;
  x = activation('stem_act', bn('stem_bn', conv('stem_conv', x, w0, 3, 1)));
  let channels = w0;
  cfg.widths.forEach((width, s) => {
    let source = x;
    for (let b = 0; b < n; b++) {
      const p = `s${s + 1}b${b + 1}`;
      const stride = s > 0 && b === 0 ? 2 : 1;
      const reshapes = stride !== 1 || channels !== width;
      const dirac = cfg.skip === 'dirac';
      let h = activation(`${p}_act1`, bn(`${p}_bn1`, conv(`${p}_conv1`, x, width, 3, stride, dirac && !reshapes)));
      h = bn(`${p}_bn2`, conv(`${p}_conv2`, h, width, 3, 1, dirac));
      if (cfg.skip !== 'dirac') {
        let shortcut = cfg.skip === 'shared-source' ? source : x;
        if (reshapes) {
          shortcut = bn(`${p}_proj_bn`, conv(`${p}_proj`, x, width, 1, stride));
          source = shortcut;
        }
        // a polynomial on the un-normalized residual stream compounds block after block
        // (x + 0.1x^2 nine times overflows float32 at init); the BN folds into the add
        h = add(`${p}_add`, { op: 'add' }, [h, shortcut]);
        if (cfg.post_add_bn) h = bn(`${p}_bn3`, h);
      }
      x = activation(`${p}_act2`, h);
      channels = width;
    }
  });
  x = add('gap', { op: 'global_avgpool' }, [x]);
  add('logits', { op: 'dense', units: classes, bias: true }, [x]);
  return { inputShape, classes, nodes, output: 'logits' };
}
