import { loadData } from '../../src/data/index.js';
import { buildGraph } from '../../src/models/build.js';
import { weightKey } from '../../src/models/graph.js';
import { initWeights } from '../../src/models/tf-interpreter.js';
import { summarize } from '../../src/models/summary.js';
import { RecipeSchema, type Recipe } from '../../src/recipe/schema.js';
import { saveCheckpoint } from '../../src/train/checkpoint.js';
import { evaluateWithRanges, toParams } from '../../src/train/evaluate.js';
import { makeRng } from '../../src/util/rng.js';

const FMNIST_SMALL = {
  source: 'idx',
  train: { images: 'datasets/fashion-mnist/train-images-idx3-ubyte.gz', labels: 'datasets/fashion-mnist/train-labels-idx1-ubyte.gz' },
  test: { images: 'datasets/fashion-mnist/t10k-images-idx3-ubyte.gz', labels: 'datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz' },
  limit: 256,
  test_limit: 32,
};
const CANCER = { source: 'csv', path: 'datasets/breast-cancer-wisconsin.csv', label: 'diagnosis' };

/** Small networks of each family the exporter handles, on shipped data. */
export const MODELS: Record<string, { data: Record<string, unknown>; model: Record<string, unknown> }> = {
  mlp: { data: CANCER, model: { kind: 'mlp', hidden: [8, 6], batchnorm: true, activation: { kind: 'quad' } } },
  cnn: {
    data: FMNIST_SMALL,
    model: {
      kind: 'cnn',
      activation: { kind: 'quad' },
      layers: [
        { type: 'conv', filters: 3, kernel: 3, stride: 2 },
        { type: 'activation' },
        { type: 'batchnorm' },
        { type: 'conv', filters: 3, kernel: 3, groups: 3 },
        { type: 'avgpool', size: 2 },
        { type: 'pad', to: 8 },
        { type: 'conv', filters: 4, kernel: 3, padding: 'valid' },
        { type: 'activation', activation: { kind: 'poly', degree: 3 } },
        { type: 'flatten' },
        { type: 'dense', units: 6 },
        { type: 'activation', activation: { kind: 'square' } },
        { type: 'dense' },
      ],
    },
  },
  resnet: { data: FMNIST_SMALL, model: { kind: 'resnet', depth: 8, widths: [2, 4, 4], pad_to: 32, activation: { kind: 'quad' } } },
  // tiny images (the 30 CSV features as 5x6): he-validate runs these in seconds
  'cnn-csv': {
    data: { ...CANCER, shape: [5, 6, 1] },
    model: { kind: 'cnn', activation: { kind: 'quad' }, layers: [{ type: 'conv', filters: 2, kernel: 3 }, { type: 'activation' }, { type: 'batchnorm' }, { type: 'avgpool', size: 2 }, { type: 'flatten' }, { type: 'dense' }] },
  },
  'resnet-csv': { data: { ...CANCER, shape: [5, 6, 1] }, model: { kind: 'resnet', depth: 8, widths: [2, 2, 2], activation: { kind: 'quad' } } },
  'resnet-dirac': { data: FMNIST_SMALL, model: { kind: 'resnet', depth: 8, widths: [2, 2, 4], skip: 'dirac', activation: { kind: 'quad' } } },
};

/**
 * A checkpoint straight from initialisation (no training: export and import must hold for any
 * weights), with batchnorm statistics and activation coefficients moved off their defaults so
 * that a mix-up of gamma/beta/mean/variance or of coefficient order would show.
 */
export async function makeCheckpoint(dir: string, which: keyof typeof MODELS): Promise<string> {
  const spec = MODELS[which];
  const recipe: Recipe = RecipeSchema.parse({ name: `onnx-${which}`, seed: 7, data: spec.data, model: spec.model });
  const data = await loadData(recipe.data, { seed: recipe.seed });
  const graph = buildGraph(recipe.model, data.preprocess.inputShape, data.preprocess.labels.length);
  const weights = initWeights(graph, 7);
  const rng = makeRng(7, 'onnx-test');
  for (const node of graph.nodes) {
    const w = (p: string) => weights.get(weightKey(node.name, p));
    if (node.layer.op === 'batchnorm') {
      w('moving_mean')!.data.forEach((_, i, a) => (a[i] = 0.2 * (rng.next() - 0.5)));
      w('moving_variance')!.data.forEach((_, i, a) => (a[i] = 0.5 + rng.next()));
      w('gamma')!.data.forEach((_, i, a) => (a[i] = 0.5 + rng.next()));
      w('beta')!.data.forEach((_, i, a) => (a[i] = 0.2 * (rng.next() - 0.5)));
    }
    if (node.layer.op === 'activation' && w('coeffs')) w('coeffs')!.data.forEach((v, i, a) => (a[i] = v + 0.05 * (rng.next() - 0.5)));
    if (node.layer.op === 'conv2d' && w('alpha')) w('alpha')!.data.forEach((_, i, a) => (a[i] = 0.5 + rng.next()));
  }
  const params = toParams(weights);
  const r = evaluateWithRanges(graph, params, data.train);
  params.forEach((t) => t.dispose());
  const ranges = { input: r.input, activations: r.activations };
  saveCheckpoint(dir, {
    graph,
    weights,
    recipe,
    preprocess: data.preprocess,
    ranges,
    metrics: [],
    state: { epochs_done: 0, complete: true, backend: 'test', seed: 7 },
    optimizer: null,
    summary: { ...summarize(graph, ranges), train_accuracy: r.accuracy },
  });
  return dir;
}
