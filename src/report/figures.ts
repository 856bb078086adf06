import type { TopLevelSpec } from 'vega-lite';
import type { ReportData } from './data.js';

/**
 * The report's figures as vega-lite specs: pure functions of the report data, one per figure,
 * so a test can check a figure's content (its points, its cells) without rendering the page.
 */

export interface Figure {
  /** file name stem: <id>.svg, <id>.png */
  id: string;
  title: string;
  spec: TopLevelSpec;
}

const WIDTH = 460;
const finite = (v: number | undefined): v is number => v !== undefined && Number.isFinite(v);

export function reportFigures(d: ReportData): Figure[] {
  const figures = [lossFigure(d), accuracyFigure(d), learningRateFigure(d)];
  if (d.ranges.length) figures.push(rangesFigure(d));
  if (d.out_of_range_columns.length) figures.push(outOfRangeFigure(d));
  figures.push(confusionFigure(d), perClassFigure(d), layersFigure(d));
  return figures;
}

/** train and validation curves of one metric: a line with one point per epoch per split */
function perEpoch(d: ReportData, id: string, title: string, train: string, val: string): Figure {
  const values = d.metrics.flatMap((r) =>
    [
      { epoch: r.epoch, split: 'train', value: r[train] },
      { epoch: r.epoch, split: 'validation', value: r[val] },
    ].filter((p) => finite(p.value)),
  );
  return {
    id,
    title,
    spec: {
      title,
      width: WIDTH,
      height: 240,
      data: { values },
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'epoch', type: 'quantitative', axis: { tickMinStep: 1 } },
        y: { field: 'value', type: 'quantitative', title: id, scale: { zero: false } },
        color: { field: 'split', type: 'nominal' },
      },
    },
  };
}

function lossFigure(d: ReportData): Figure {
  return perEpoch(d, 'loss', 'Loss per epoch', 'loss', 'val_loss');
}

function accuracyFigure(d: ReportData): Figure {
  return perEpoch(d, 'accuracy', 'Accuracy per epoch', 'accuracy', 'val_accuracy');
}

function learningRateFigure(d: ReportData): Figure {
  const title = 'Learning rate per epoch';
  return {
    id: 'learning-rate',
    title,
    spec: {
      title,
      width: WIDTH,
      height: 160,
      data: { values: d.metrics.map((r) => ({ epoch: r.epoch, lr: r.lr })) },
      mark: { type: 'line', point: true },
      encoding: { x: { field: 'epoch', type: 'quantitative', axis: { tickMinStep: 1 } }, y: { field: 'lr', type: 'quantitative', title: 'learning rate' } },
    },
  };
}

/**
 * Each activation's observed input: a rule from min to max, ticks at the 0.1th and 99.9th
 * percentiles, over a band where the polynomial is meant to work. A symmetric log axis once
 * values pass 1000, since an unregularized deep quad network reaches 1e10.
 */
function rangesFigure(d: ReportData): Figure {
  const values = d.ranges.map((r) => ({ name: r.name, min: r.min, max: r.max, p001: r.p001, p999: r.p999, ref_lo: r.reference?.[0], ref_hi: r.reference?.[1], ref: r.reference_kind }));
  const extreme = Math.max(...d.ranges.map((r) => Math.max(Math.abs(r.min), Math.abs(r.max))));
  const scale = extreme > 1000 ? { type: 'symlog' as const } : {};
  const y = { field: 'name', type: 'nominal' as const, sort: null, title: 'activation (input)' };
  const title = 'Activation input range (min..max, ticks: 0.1th/99.9th percentile) against the range bound or relu-approx interval';
  return {
    id: 'activation-ranges',
    title,
    spec: {
      title: { text: 'Activation input range', subtitle: 'rule: min..max; ticks: p0.1 / p99.9; band: range bound or relu-approx interval' },
      width: WIDTH,
      data: { values },
      layer: [
        {
          transform: [{ filter: 'isValid(datum.ref_lo)' }],
          mark: { type: 'bar', color: '#b7e4c7', height: { band: 0.8 } },
          encoding: { y, x: { field: 'ref_lo', type: 'quantitative', scale, title: 'input value' }, x2: { field: 'ref_hi' }, tooltip: [{ field: 'ref' }] },
        },
        { mark: { type: 'rule', strokeWidth: 2 }, encoding: { y, x: { field: 'min', type: 'quantitative', scale }, x2: { field: 'max' } } },
        { mark: { type: 'tick', color: '#d95f02', thickness: 2 }, encoding: { y, x: { field: 'p001', type: 'quantitative', scale } } },
        { mark: { type: 'tick', color: '#d95f02', thickness: 2 }, encoding: { y, x: { field: 'p999', type: 'quantitative', scale } } },
      ],
    },
  };
}

function outOfRangeFigure(d: ReportData): Figure {
  const values = d.metrics.flatMap((r) =>
    d.out_of_range_columns.filter((c) => finite(r[c])).map((c) => ({ epoch: r.epoch, activation: c.replace(/^out_of_range_/, ''), fraction: r[c] })),
  );
  const title = `Fraction of activation inputs outside [-${d.range_bound}, ${d.range_bound}] per epoch`;
  return {
    id: 'out-of-range',
    title,
    spec: {
      title,
      width: WIDTH,
      height: 240,
      data: { values },
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'epoch', type: 'quantitative', axis: { tickMinStep: 1 } },
        y: { field: 'fraction', type: 'quantitative', title: 'fraction out of range' },
        color: { field: 'activation', type: 'nominal' },
      },
    },
  };
}

function confusionFigure(d: ReportData): Figure {
  const { labels, matrix } = d.held_out;
  const values = matrix.flatMap((row, t) => row.map((count, p) => ({ true: labels[t], predicted: labels[p], count })));
  const side = Math.min(WIDTH, 40 * labels.length);
  const axis = { sort: labels, type: 'ordinal' as const };
  const title = `Confusion matrix, ${d.held_out.split} split (${d.held_out.samples} samples)`;
  return {
    id: 'confusion',
    title,
    spec: {
      title,
      width: side,
      height: side,
      data: { values },
      encoding: { x: { field: 'predicted', ...axis, axis: classAxis(labels, side) }, y: { field: 'true', ...axis } },
      layer: [
        { mark: 'rect', encoding: { color: { field: 'count', type: 'quantitative', scale: { scheme: 'blues' } } } },
        // counts in the cells while they stay legible
        ...(labels.length <= 20 ? [{ mark: { type: 'text' as const, fontSize: 10 }, encoding: { text: { field: 'count', type: 'quantitative' as const } } }] : []),
      ],
    },
  };
}

/** class names upright while each fits its band (~7 px a character), else vega-lite's default (rotated) */
function classAxis(labels: string[], width: number): { labelAngle?: number } {
  const longest = Math.max(...labels.map((l) => l.length));
  return longest * 7 <= width / labels.length ? { labelAngle: 0 } : {};
}

function perClassFigure(d: ReportData): Figure {
  const teacher = d.teacher && 'per_class' in d.teacher ? d.teacher : null;
  const values = d.held_out.labels.flatMap((label, i) => [
    { class: label, model: 'student', accuracy: d.held_out.per_class[i] },
    ...(teacher ? [{ class: label, model: 'teacher', accuracy: teacher.per_class[i] }] : []),
  ]);
  const title = `Per-class accuracy, ${d.held_out.split} split${teacher ? ' (student beside its teacher)' : ''}`;
  return {
    id: 'per-class-accuracy',
    title,
    spec: {
      title,
      width: WIDTH,
      height: 220,
      data: { values: values.filter((v) => finite(v.accuracy)) },
      mark: 'bar',
      encoding: {
        x: { field: 'class', type: 'ordinal', sort: d.held_out.labels, axis: classAxis(d.held_out.labels, WIDTH) },
        xOffset: { field: 'model' },
        y: { field: 'accuracy', type: 'quantitative', scale: { domain: [0, 1] } },
        color: { field: 'model', type: 'nominal' },
      },
    },
  };
}

function layersFigure(d: ReportData): Figure {
  const values = d.summary.layers.map((l) => ({ layer: `${l.name} (${l.op})`, params: l.params, he_levels: l.he_depth }));
  const y = { field: 'layer', type: 'nominal' as const, sort: null, title: null };
  const height = Math.max(120, 16 * values.length);
  const title = 'Parameters and CKKS levels per layer';
  return {
    id: 'layers',
    title,
    spec: {
      title,
      data: { values },
      // one row per layer in both panels; a layer without a level cost (not HE) has no bar
      resolve: { scale: { y: 'shared' } },
      hconcat: [
        { width: 260, height, mark: 'bar', encoding: { y, x: { field: 'params', type: 'quantitative', title: 'parameters' } } },
        {
          width: 160,
          height,
          mark: { type: 'bar', color: '#7570b3' },
          encoding: { y: { ...y, axis: null }, x: { field: 'he_levels', type: 'quantitative', title: 'HE levels', axis: { tickMinStep: 1 } } },
        },
      ],
    },
  };
}
