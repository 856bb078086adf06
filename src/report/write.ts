import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadCheckpoint, type Checkpoint } from '../train/checkpoint.js';
import { writeDirAtomic, type FileContents } from '../util/atomic-dir.js';
import { collectReport, type ReportData } from './data.js';
import { reportFigures } from './figures.js';
import { specToSvg, svgToPng } from './render.js';
import { reportHtml, type RenderedFigure } from './html.js';

/**
 * A training report: report.html (self-contained), each figure as <id>.svg and <id>.png, and
 * report.json (the numbers behind them). By default it goes to CHECKPOINT/report/: a
 * subfolder the checkpoint's manifest (model.json) does not list, so writing or rewriting a
 * report never changes a checksummed file; the report is derived and can be made again.
 * A later save of the checkpoint (resume, prune) replaces the folder and with it the report,
 * which is then written again.
 */

export const REPORT_DIR = 'report';
/** written last: its presence marks a complete report folder */
export const PAGE = 'report.html';

export interface WrittenReport {
  dir: string;
  files: string[];
  data: ReportData;
}

export async function writeReport(checkpoint: string | Checkpoint, outDir?: string): Promise<WrittenReport> {
  const ckpt = typeof checkpoint === 'string' ? loadCheckpoint(checkpoint) : checkpoint;
  const data = await collectReport(ckpt);
  const rendered: RenderedFigure[] = [];
  const files: [string, FileContents][] = [];
  for (const f of reportFigures(data)) {
    const svg = await specToSvg(f.spec);
    rendered.push({ id: f.id, title: f.title, svg });
    files.push([`${f.id}.svg`, svg], [`${f.id}.png`, svgToPng(svg)]);
  }
  files.push(['report.json', JSON.stringify(data, null, 1)], [PAGE, reportHtml(data, rendered)]);
  const dir = resolve(outDir ?? join(ckpt.dir, REPORT_DIR));
  writeDirAtomic(dir, files, (d) => existsSync(join(d, PAGE)));
  return { dir, files: files.map(([n]) => n), data };
}
