/**
 * Child process of threads.test.ts: trains a small ResNet (convolutions, batchnorm, quad,
 * strided projection) for one short epoch with the trainer's step code on the wasm backend,
 * with the threads HEPOLY_WASM_THREADS asks for, and prints one JSON line: the threads the
 * convolution kernels ran on, the loss and a SHA-256 of every weight's bits.
 */
import * as tf from '@tensorflow/tfjs-core';
import { createHash } from 'node:crypto';
import { initBackend } from '../../../src/train/backend.js';
import { kernelThreads } from '../../../src/train/kernels/index.js';
import { RecipeSchema } from '../../../src/recipe/schema.js';
import { buildGraph } from '../../../src/models/build.js';
import { initWeights } from '../../../src/models/tf-interpreter.js';
import { Run } from '../../../src/train/loop.js';

const INPUT = [8, 8, 4];
const COUNT = 48;

await initBackend('wasm');
const recipe = RecipeSchema.parse({
  name: 'threads',
  seed: 3,
  data: { source: 'csv', path: '(random)', label: 'y' },
  model: { kind: 'resnet', depth: 8, widths: [8, 16, 16], skip: 'standard', activation: { kind: 'quad' } },
  train: { batch: 16, optimizer: { kind: 'adam', lr: 1e-2 } },
});
const graph = buildGraph(recipe.model, INPUT, 4);
const run = new Run(graph, initWeights(graph, 3), recipe, 1);
const per = INPUT.reduce((a, b) => a * b, 1);
const x = new Float32Array(COUNT * per).map((_, i) => Math.sin(i * 12.9898) * 1.5);
const y = new Int32Array(COUNT).map((_, i) => (i * 7) % 4);
let loss = 0;
for (let epoch = 0; epoch < 2; epoch++) loss = (await run.trainEpoch({ x, y, count: COUNT }, epoch, 1e-2, () => {})).loss;
const hash = createHash('sha256');
for (const [key, w] of [...run.weightMap()].sort(([a], [b]) => (a < b ? -1 : 1))) hash.update(key).update(new Uint8Array(w.data.buffer, w.data.byteOffset, w.data.byteLength));
process.stdout.write(`${JSON.stringify({ threads: kernelThreads(tf.backend()), loss, weights: hash.digest('hex') })}\n`);
run.dispose();
