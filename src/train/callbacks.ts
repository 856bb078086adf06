import type { Graph } from '../models/graph.js';
import type { Recipe } from '../recipe/schema.js';
import type { MetricsRow } from './checkpoint.js';

/** Hooks of the training loop (progress display, logging), in the style of Lightning callbacks. */
export interface TrainStartInfo {
  backend: string;
  recipe: Recipe;
  graph: Graph;
  outDir: string;
  trainCount: number;
  valCount: number;
  testCount: number;
  startEpoch: number;
  batchesPerEpoch: number;
}

export interface TrainResult {
  checkpoint: string;
  epochs: number;
  train_accuracy: number;
  val_accuracy: number;
  test_accuracy: number | null;
  samples_per_s: number;
  backend: string;
}

export interface TrainCallbacks {
  onStart?(info: TrainStartInfo): void;
  onEpochStart?(epoch: number, lr: number): void;
  onBatch?(epoch: number, batch: number, batches: number, loss: number): void;
  onEpoch?(row: MetricsRow): void;
  onMessage?(text: string): void;
  onEnd?(result: TrainResult): void;
}
