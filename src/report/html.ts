import type { ReportData } from './data.js';

/**
 * The report page: one HTML file with every figure inline (SVG), the figures as numbers
 * beside them, and no external reference (no script, style sheet or image to fetch), so it
 * opens anywhere, from a mail attachment too.
 */

export interface RenderedFigure {
  id: string;
  title: string;
  svg: string;
}

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
const fmt = (x: number | null | undefined, d = 4) => (x === null || x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(d));

export function reportHtml(d: ReportData, figures: RenderedFigure[]): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hepoly report: ${esc(d.recipe)}</title>
<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th:first-child,td:first-child{text-align:left}figure{margin:2em 0}figcaption{color:#555;font-size:90%}</style>
</head><body>
<h1>${esc(d.recipe)}</h1>
<p>checkpoint <code>${esc(d.checkpoint)}</code>: ${esc(d.model)}, ${d.epochs_done} epochs${d.complete ? '' : ' (training not finished)'}.</p>
${headlineTable(d)}
${figures.map((f) => `<figure id="${esc(f.id)}">\n${f.svg}\n<figcaption>${esc(f.title)}</figcaption></figure>`).join('\n')}
${layersTable(d)}
</body></html>
`;
}

function headlineTable(d: ReportData): string {
  const last = d.metrics[d.metrics.length - 1];
  const rows: [string, string][] = [
    ['train accuracy (last epoch)', fmt(last?.accuracy)],
    ['validation accuracy (last epoch)', fmt(last?.val_accuracy)],
    [`${d.held_out.split} accuracy (${d.held_out.samples} samples)`, fmt(d.held_out.accuracy)],
  ];
  if (d.teacher) {
    rows.push(['accuracy' in d.teacher ? `teacher ${d.teacher.description}, same samples` : `teacher ${d.teacher.description}`, 'accuracy' in d.teacher ? fmt(d.teacher.accuracy) : `not evaluated: ${d.teacher.error}`]);
  }
  rows.push(['parameters', d.summary.total_params.toLocaleString('en-US')], ['CKKS depth', d.summary.he_depth === null ? 'not HE-ready' : String(d.summary.he_depth)]);
  return `<table>${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join('')}</table>`;
}

function layersTable(d: ReportData): string {
  const head = '<tr><th>layer</th><th>op</th><th>output shape</th><th>params</th><th>input range [min, max]</th><th>HE levels</th></tr>';
  const rows = d.summary.layers.map(
    (l) =>
      `<tr><td>${esc(l.name)}</td><td>${esc(l.op)}</td><td>(${l.output_shape.join(', ')})</td><td>${l.params}</td><td>${l.input_range ? `[${l.input_range.min.toPrecision(3)}, ${l.input_range.max.toPrecision(3)}]` : ''}</td><td>${l.he_depth ?? '-'}</td></tr>`,
  );
  return `<h2>Layers</h2><table>${head}${rows.join('')}</table>`;
}
