import { loadCheckpoint, type Checkpoint } from '../../train/checkpoint.js';
import { initBackend } from '../../train/backend.js';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { HepolyError } from '../../util/errors.js';
import { isSequenceGraph } from './evaluator.js';
import { parseRefresh } from './params.js';
import { sequenceReportJson, sequenceReportText } from './report.js';
import { validateSequence } from './validate.js';
import { parseMode } from '../validate.js';

/** `hepoly he-validate` on a transformer checkpoint (the CLI hands over when `sequenceCheckpoint` finds one). */

export interface SequenceCliArgs {
  samples?: number | 'all';
  packing?: string;
  params?: string;
  scaleBits?: number;
  mode?: string;
  refresh?: string;
  trace?: boolean;
  report?: string;
  json?: boolean;
  /** progress lines of the run (default: stdout); the CLI's progress bar pauses for them */
  log?: (line: string) => void;
}

/** The checkpoint when it holds sequence (transformer) layers, else null. */
export function sequenceCheckpoint(dir: string): Checkpoint | null {
  const ckpt = loadCheckpoint(dir);
  return isSequenceGraph(ckpt.graph) ? ckpt : null;
}

export async function runSequenceHeValidate(ckpt: Checkpoint, a: SequenceCliArgs): Promise<void> {
  if (a.packing && a.packing !== 'auto' && a.packing !== 'batch') {
    throw new HepolyError(`--packing ${a.packing}: transformer checkpoints run batch-packed (slot = sample, no rotations); use --packing batch or auto`);
  }
  const mode = parseMode(a.mode);
  if (a.scaleBits !== undefined) throw new HepolyError('--scale-bits: transformer checkpoints choose their scale per segment; pass a --params file to fix it');
  await initBackend();
  const samples = a.samples === undefined ? 10 : a.samples === 'all' || a.samples === 0 ? Infinity : a.samples;
  const r = await validateSequence(ckpt, {
    samples,
    mode,
    refresh: parseRefresh(a.refresh),
    params: a.params,
    trace: !!a.trace,
    log: a.log ?? ((line) => console.log(line)),
  });
  const lines = sequenceReportText(r);
  for (const line of lines) console.log(line);
  if (a.report) {
    writeFileAtomic(a.report, `# he-validate ${r.checkpoint}\n\n\`\`\`\n${lines.join('\n')}\n\`\`\`\n`);
    console.log(`report written to ${a.report}`);
  }
  if (a.json) console.log(JSON.stringify(sequenceReportJson(r)));
}
