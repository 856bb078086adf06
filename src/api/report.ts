import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend } from '../train/backend.js';
import { claimOutputDir } from '../util/output-guard.js';
import type { WrittenReport } from '../report/write.js';

export interface ReportOptions {
  /** report folder (default CHECKPOINT/report); a folder of anything but a hepoly report is refused */
  out?: string;
  /** tfjs backend for the held-out evaluation (default: the fastest that loads) */
  backend?: string;
}

/** Is `dir` a hepoly training report (its page is there)? */
function describeReport(dir: string, page: string): string | null {
  return existsSync(join(dir, page)) ? 'a hepoly report' : null;
}

/**
 * The training report of a checkpoint (HTML, SVG, PNG, report.json). `out` is claimed like every
 * other output before any work: a file, a symlink, the current folder or a folder of other files
 * is refused; an earlier report there is replaced (it is made from the checkpoint again).
 */
export async function report(checkpoint: string, o: ReportOptions = {}): Promise<WrittenReport> {
  // loaded here, not when any hepoly command starts: vega and resvg take a moment to load
  const { writeReport, PAGE } = await import('../report/write.js');
  const claim = o.out === undefined ? null : claimOutputDir(o.out, { flag: '--out', kind: 'report', describeOurs: (d) => describeReport(d, PAGE), replace: true, replaceHint: '' });
  try {
    // the held-out split is evaluated for the confusion matrix
    await initBackend(o.backend);
    return await writeReport(checkpoint, claim?.dir);
  } finally {
    claim?.release();
  }
}
