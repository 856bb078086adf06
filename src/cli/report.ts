import type { ReportOptions } from '../api/report.js';
import { defineCommand } from './command.js';

/** The library's report options (src/api/report.ts), plus what only the CLI has. */
export type ReportArgs = ReportOptions & { checkpoint: string; json?: boolean };

/** `hepoly report CHECKPOINT [--out DIR]`: the training report (HTML, SVG, PNG) of a checkpoint. */
export async function runReport(a: ReportArgs): Promise<void> {
  const [{ report }, { shortPath }] = await Promise.all([import('../api/report.js'), import('../util/paths.js')]);
  const r = await report(a.checkpoint, { out: a.out, backend: a.backend });
  const h = r.data.held_out;
  console.log(`${r.data.checkpoint}: ${h.split} accuracy ${h.accuracy.toFixed(4)} on ${h.samples} samples`);
  if (r.data.teacher) console.log('accuracy' in r.data.teacher ? `teacher ${r.data.teacher.description}: ${r.data.teacher.accuracy.toFixed(4)} on the same samples` : `teacher not evaluated: ${r.data.teacher.error}`);
  console.log(`report: ${shortPath(r.dir)}/report.html (${r.files.filter((f) => f.endsWith('.svg')).length} figures as SVG and PNG)`);
  if (a.json) console.log(JSON.stringify({ report: r.dir, files: r.files, split: h.split, samples: h.samples, accuracy: h.accuracy, teacher_accuracy: r.data.teacher && 'accuracy' in r.data.teacher ? r.data.teacher.accuracy : null }));
}

export const reportCommand = defineCommand(
  'report <checkpoint>',
  'training report: loss, accuracy, learning rate, activation ranges, confusion matrix, layers (HTML, SVG, PNG)',
  (y) =>
    y
      .positional('checkpoint', { type: 'string', demandOption: true })
      .option('out', { type: 'string', describe: 'report folder (default CHECKPOINT/report)' })
      .option('backend', { type: 'string' })
      .option('json', { type: 'boolean', default: false }),
  (a) => runReport({ checkpoint: a.checkpoint, out: a.out, backend: a.backend, json: a.json }),
);
