import * as tf from '@tensorflow/tfjs-core';
import type { Recipe } from '../../recipe/schema.js';
import type { Graph, WeightMap } from '../../models/graph.js';
import { isTrainableParam } from '../../models/graph.js';
import { forward } from '../../models/tf-interpreter.js';
import type { Split } from '../../data/index.js';
import { Run } from '../../train/loop.js';
import { learningRate } from '../../train/schedule.js';
import { crossEntropy } from '../../train/losses.js';
import { SecureRandom } from '../secure-random.js';
import { clipL2, FlatAdam, flatten, unflatten } from './weights.js';

/**
 * Aggregation rules as strategy objects (Flower's structure): a strategy says what a party
 * contributes in a round and how the summed contributions become the next global model. The
 * transport, the masks and the encryption are the same for every strategy (secure-sum.ts).
 */
export interface Strategy {
  readonly name: string;
  /** what this party adds to round `round`'s sum (it may depend on who takes part) */
  contribution(global: WeightMap, round: number): (participants: string[]) => Float64Array;
  /** the next global model from the sum of all contributions */
  apply(global: WeightMap, sum: Float64Array, round: number): WeightMap;
}

let runIds = 0;

/**
 * Federated averaging (McMahan et al. 2017): `local_epochs` of hepoly's own training loop on
 * the party's rows from the global weights, then the sample-weighted mean of the updates:
 * a party contributes [n_i * (w_i - w), n_i] and the new model is w + sum / sum(n_i).
 */
export class FedAvg implements Strategy {
  readonly name = 'fedavg';
  constructor(
    private readonly graph: Graph,
    private readonly recipe: Recipe,
    private readonly recipeFile: string,
    private readonly train: Split,
    private readonly localEpochs: number,
    private readonly rounds: number,
  ) {}

  contribution(global: WeightMap, round: number): (participants: string[]) => Float64Array {
    const run = new Run(this.graph, global, this.recipe, 1000 + ++runIds);
    run.recipeFile = this.recipeFile;
    try {
      const schedule = { ...this.recipe.train, epochs: this.rounds };
      const lr = learningRate(schedule, round - 1);
      for (let e = 0; e < this.localEpochs; e++) run.trainEpoch(this.train, (round - 1) * this.localEpochs + e, lr, () => undefined);
      const local = flatten(run.weightMap());
      const w = flatten(global);
      const n = this.train.count;
      const out = new Float64Array(w.length + 1);
      for (let i = 0; i < w.length; i++) out[i] = n * (local[i] - w[i]);
      out[w.length] = n;
      return () => out;
    } finally {
      run.dispose();
    }
  }

  apply(global: WeightMap, sum: Float64Array): WeightMap {
    const w = flatten(global);
    const n = sum[w.length];
    for (let i = 0; i < w.length; i++) w[i] += sum[i] / n;
    return unflatten(w, global);
  }
}

/**
 * Distributed DP-SGD (Abadi et al. 2016) across parties: each round every party Poisson-samples
 * its records with rate q, clips each record's gradient to L2 norm `clip`, sums them and adds
 * its share N(0, sigma^2 clip^2 / m) of the noise (m: parties taking part), so the sum carries
 * exactly the noise of central DP-SGD while each party adds 1/m of the variance local DP would
 * need. The mean gradient sum / (q * N) drives one Adam step that every party applies alike.
 * The accountant charges one sampled-Gaussian step per round.
 */
export class DpSgd implements Strategy {
  readonly name = 'dp-sgd';
  private readonly random = new SecureRandom();
  private adam: FlatAdam | null = null;

  constructor(
    private readonly graph: Graph,
    private readonly recipe: Recipe,
    private readonly train: Split,
    readonly q: number,
    readonly sigma: number,
    readonly clip: number,
    private readonly totalRecords: number,
    private readonly rounds: number,
  ) {}

  contribution(global: WeightMap, _round: number): (participants: string[]) => Float64Array {
    const sum = this.clippedGradientSum(global);
    return (participants) => {
      const std = (this.sigma * this.clip) / Math.sqrt(participants.length);
      const out = Float64Array.from(sum);
      for (let i = 0; i < out.length; i++) out[i] += std * this.random.normal();
      return out;
    };
  }

  apply(global: WeightMap, sum: Float64Array, round: number): WeightMap {
    const w = flatten(global);
    this.adam ??= new FlatAdam(w.length);
    const grad = sum.map((g) => g / (this.q * this.totalRecords));
    const lr = learningRate({ ...this.recipe.train, epochs: this.rounds }, round - 1);
    this.adam.step(w, grad, lr);
    return unflatten(w, global);
  }

  /** Sum over the Poisson-sampled records of each record's clipped gradient. */
  private clippedGradientSum(global: WeightMap): Float64Array {
    const keys = [...global.keys()];
    const params = new Map<string, tf.Tensor>();
    const vars: tf.Variable[] = [];
    const trainableKey = new Set<string>();
    for (const node of this.graph.nodes) {
      for (const k of keys) {
        if (!k.startsWith(`${node.name}/`)) continue;
        const w = global.get(k)!;
        if (isTrainableParam(node, k.slice(node.name.length + 1))) {
          const v = tf.variable(tf.tensor(w.data, w.shape), true, `dp${++runIds}/${k}`);
          params.set(k, v);
          vars.push(v);
          trainableKey.add(k);
        } else params.set(k, tf.tensor(w.data, w.shape));
      }
    }
    const per = this.graph.inputShape.reduce((a, b) => a * b, 1);
    const total = flatten(global).length;
    const sum = new Float64Array(total);
    try {
      for (let i = 0; i < this.train.count; i++) {
        if (this.random.uniform() >= this.q) continue;
        const g = new Float64Array(total);
        tf.tidy(() => {
          const x = tf.tensor(this.train.x.subarray(i * per, (i + 1) * per), [1, ...this.graph.inputShape]);
          const y = tf.tensor1d([this.train.y[i]], 'int32');
          const { grads } = tf.variableGrads(() => crossEntropy(forward(this.graph, params, x, { training: false }).logits as tf.Tensor2D, y, this.graph.classes), vars);
          let off = 0;
          for (const k of keys) {
            const size = global.get(k)!.data.length;
            if (trainableKey.has(k)) g.set(grads[(params.get(k) as tf.Variable).name].dataSync(), off);
            off += size;
          }
        });
        clipL2(g, this.clip);
        for (let j = 0; j < total; j++) sum[j] += g[j];
      }
    } finally {
      for (const t of params.values()) t.dispose();
    }
    return sum;
  }
}
