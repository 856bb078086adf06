import type { Checkpoint, MetricsRow, RangeStat } from '../train/checkpoint.js';
import type { ModelSummary } from '../models/summary.js';
import type { GraphNode } from '../models/graph.js';
import { heldOutSplit, toParams } from '../train/evaluate.js';
import { loadTeacher } from '../train/teacher.js';
import { shortPath } from '../util/paths.js';
import { opOf } from '../ops/registry.js';
import { argmaxRows, confusionMatrix, splitLogits, type Confusion } from './confusion.js';

/** Everything a training report shows, gathered once; figures and the HTML page only read it. */
export interface ReportData {
  checkpoint: string;
  recipe: string;
  model: string;
  epochs_done: number;
  complete: boolean;
  metrics: MetricsRow[];
  /** metrics.csv columns out_of_range_<layer> (range-aware training only) */
  out_of_range_columns: string[];
  ranges: ActivationRange[];
  /** range-aware training's bound, when the recipe has one */
  range_bound: number | null;
  held_out: Confusion & { split: 'test' | 'validation' };
  summary: ModelSummary;
  teacher: TeacherResult | null;
}

export interface ActivationRange extends RangeStat {
  name: string;
  /** where the polynomial is meant to work: [-bound, bound] or the op's fit interval (OpDef.fitInterval) */
  reference: [number, number] | null;
  /** 'range.bound', or the fit interval's label ('relu-approx interval') */
  reference_kind: string | null;
}

export type TeacherResult =
  | { description: string; accuracy: number; per_class: number[]; samples: number }
  | { description: string; error: string };

export async function collectReport(ckpt: Checkpoint): Promise<ReportData> {
  const split = await heldOutSplit(ckpt);
  const params = toParams(ckpt.weights);
  let logits: Float32Array;
  try {
    logits = splitLogits(ckpt.graph, params, split.x, split.count);
  } finally {
    params.forEach((t) => t.dispose());
  }
  const labels = ckpt.preprocess.labels.map(visibleLabel);
  const heldOut = { split: split.name, ...confusionMatrix(split.y, argmaxRows(logits, ckpt.graph.classes), labels) };
  const columns = [...new Set(ckpt.metrics.flatMap((r) => Object.keys(r)))].filter((k) => k.startsWith('out_of_range_'));
  return {
    checkpoint: shortPath(ckpt.dir),
    recipe: ckpt.recipe.name,
    model: ckpt.recipe.model.kind,
    epochs_done: ckpt.state.epochs_done,
    complete: ckpt.state.complete,
    metrics: ckpt.metrics,
    out_of_range_columns: columns,
    ranges: activationRanges(ckpt),
    range_bound: ckpt.recipe.range?.bound ?? null,
    held_out: heldOut,
    summary: ckpt.summary as ModelSummary,
    teacher: ckpt.recipe.distill ? await teacherOnSplit(ckpt, split) : null,
  };
}

/** A class name as a figure can show it: a character model's space and newline are classes too. */
export function visibleLabel(label: unknown): string {
  const s = String(label);
  return ({ ' ': '(space)', '\n': '\\n', '\t': '\\t', '': '(empty)' } as Record<string, string>)[s] ?? s;
}

/** Each recorded range beside the interval it should stay in (the range bound wins over a fit interval: it is what training enforced). */
export function activationRanges(ckpt: Pick<Checkpoint, 'ranges' | 'recipe' | 'graph'>): ActivationRange[] {
  if (!ckpt.ranges) return [];
  const bound = ckpt.recipe.range?.bound;
  return Object.entries(ckpt.ranges.activations).map(([name, stat]) => ({ name, ...stat, ...referenceOf(ckpt.graph.nodes.find((n) => n.name === name), bound) }));
}

function referenceOf(node: GraphNode | undefined, bound: number | undefined): Pick<ActivationRange, 'reference' | 'reference_kind'> {
  if (!node) return { reference: null, reference_kind: null };
  const op = opOf(node);
  // the trainer's range penalty acts on the inputs the ops probe as 'input' (src/train/loop.ts)
  if (bound !== undefined && op.rangeProbes(node.layer).includes('input')) return { reference: [-bound, bound], reference_kind: 'range.bound' };
  const fitted = op.fitInterval?.(node.layer);
  return fitted ? { reference: fitted.range, reference_kind: fitted.label } : { reference: null, reference_kind: null };
}

/** The teacher on the student's held-out split, so the two accuracies are comparable. */
async function teacherOnSplit(ckpt: Checkpoint, split: { x: Float32Array; y: Int32Array; count: number }): Promise<TeacherResult> {
  const cfg = ckpt.recipe.distill!;
  try {
    const teacher = await loadTeacher(cfg, ckpt.graph.inputShape, ckpt.preprocess, `${shortPath(ckpt.dir)}/recipe.yaml`);
    try {
      const logits = await teacher.logits(split.x, split.count);
      const c = confusionMatrix(split.y, argmaxRows(logits, ckpt.graph.classes), ckpt.preprocess.labels.map(visibleLabel));
      return { description: teacher.description, accuracy: c.accuracy, per_class: c.per_class, samples: c.samples };
    } finally {
      teacher.dispose();
    }
  } catch (e) {
    // a report of the student is still worth having when its teacher has moved
    return { description: cfg.teacher, error: (e as Error).message };
  }
}
