/**
 * hepoly as a library: the same operations as the CLI, resolving to the objects its `--json`
 * prints. The CLI (src/cli/) is a thin layer over these; everything else under src/ is internal
 * and may change between versions.
 *
 *   import { train, evaluate, heValidate } from 'hepoly';
 *   const run = await train('recipes/quickstart.yaml', { set: { 'train.epochs': 3 }, out: 'ckpt/qs' });
 *   const he = await heValidate(run.checkpoint, { samples: 8, mode: 'simulate' });
 */

// commands
export { train, overrideStrings, type TrainOptions, type TrainReport, type RecipeOverrides } from './api/train.js';
export { evaluate, type EvaluateOptions, type EvaluateResult } from './api/evaluate.js';
export { heValidate, heValidateReport, type HeValidateOptions, type HeValidateResult, type HeValidation } from './api/he-validate.js';
export { plan, type PlanOptions } from './api/plan.js';
export { prune, type PruneOptions } from './api/prune.js';
export { summary, type SummaryResult } from './api/summary.js';
export { compile } from './api/compile.js';
export { listTeachers, type ShippedTeacher } from './api/teachers.js';
export { report, type ReportOptions } from './api/report.js';
export { sample, type SampleOptions, type SampleResult } from './api/sample.js';

// checkpoints and recipes
export { loadCheckpoint, type Checkpoint, type MetricsRow, type Ranges, type RangeStat } from './train/checkpoint.js';
export { loadRecipe, type LoadedRecipe } from './recipe/load.js';
export type { Recipe, ModelConfig, DataConfig, TrainConfig, DistillConfig, RangeConfig, PruneConfig, ActivationConfig, CnnLayerConfig } from './recipe/schema.js';
export type { Graph, GraphNode, LayerSpec, ActivationSpec, WeightMap, WeightTensor } from './models/graph.js';
export type { ModelSummary, SummaryRow } from './models/summary.js';
export type { TrainCallbacks, TrainResult, TrainStartInfo } from './train/callbacks.js';
export { initBackend, type BackendName } from './train/backend.js';

// ops: every layer kind is one registered definition (tfjs and float64 forwards, HE lowering, level cost)
export { registerOp, getOp, allOps } from './ops/index.js';
export type { OpDef, PackingKind } from './ops/types.js';

// the encrypted side: the client holds the secret key; the server gets public material only
export { HEClient, type PublicBundle } from './he/client.js';
export { HEServer, type ServerOptions } from './he/server.js';
export type { HeProgram } from './he/program.js';
export type { HeParams } from './he/params.js';

// deployed models (hepoly export / serve / predict): the remote client works in Node and browsers
// (src/browser/ bundles it); named RemoteHEClient here beside the in-process HEClient above
export { RemoteModel, RemoteError, HEClient as RemoteHEClient, type ClientKeyMaterial, ClientArtifactSchema, type ClientArtifact } from './deploy/client/index.js';
export { exportHeArtifacts, type HeExportOptions, type HeExportResult } from './deploy/export.js';
export { DeployServer, type ServeOptions } from './deploy/server/server.js';

// the job queue (BullMQ on Redis, docs/queue.md): workers on any machine evaluate what
// he-validate --queue shards and what a server hands over one request at a time
export { startQueueWorker, type QueueWorker, type QueueWorkerOptions } from './queue/worker.js';
export { QueueEvaluator, type QueueEvaluatorOptions, type QueueEvaluationKeys, type QueueEvaluation } from './queue/evaluator.js';
export { queuedHeValidation } from './queue/run-validate.js';
export type { QueueOptions, QueueStats } from './queue/validate-hook.js';

// ONNX in and out (hepoly import / export --format onnx)
export { importCheckpoint, type ImportCheckpointOptions, type ImportResult } from './onnx/import.js';
export { exportOnnx, toOnnxModel, type ExportOnnxResult } from './onnx/export.js';

// reports
export type { ValidationReport, LayerError, OutOfRange } from './he/validate.js';
export type { PlanResult, PlanRow } from './he/tiles/plan.js';
export type { PruneSummary } from './train/prune.js';

export { HepolyError } from './util/errors.js';
