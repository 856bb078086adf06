import { writeFileAtomic } from '../util/atomic-file.js';
import { checkOutputFile } from '../util/output-guard.js';
import { HepolyError } from '../util/errors.js';
import { validate, reportJson, type PackingChoice } from '../he/validate.js';
import { reportMarkdown, reportText } from '../he/report.js';
import { showProgress } from './progress.js';
import { runSequenceHeValidate, sequenceCheckpoint } from '../he/transformer/cli.js';

/** Options of `hepoly he-validate`, as the CLI parses them. */
export interface HeValidateArgs {
  checkpoint: string;
  samples?: number | string;
  packing?: string;
  params?: string;
  /** with --params auto: the smallest scale (bits) to accept */
  scaleBits?: number;
  report?: string;
  json?: boolean;
  trace?: boolean;
  mode?: string;
  workers?: number;
  /** 'client': the client decrypts and re-encrypts where the chain runs out of levels */
  refresh?: string;
}

/**
 * `hepoly he-validate CHECKPOINT`: human output on stdout, the markdown report with --report,
 * and with --json one JSON object as the last stdout line.
 */
export async function runHeValidate(a: HeValidateArgs): Promise<void> {
  const samples = parseSamples(a.samples);
  if (a.report !== undefined && !a.report.endsWith('.md')) {
    throw new HepolyError(`--report ${a.report}: expected a markdown file name ending in .md`);
  }
  // checked before the encrypted run, which can take hours, not after it
  if (a.report !== undefined) checkOutputFile(a.report, '--report', (text) => /^# (he-validate|Encrypted validation)/.test(text));
  // transformers (sequence layers) have their own evaluator, src/he/transformer/
  const seq = sequenceCheckpoint(a.checkpoint);
  // a bar on a terminal, a line every ~10 s in logs: encrypted runs take minutes to hours
  const progress = showProgress({ tty: !!process.stdout.isTTY && !a.json, task: 'he-validate' });
  try {
    await runCheckpoint(a, samples, seq, (line) => {
      progress.pause();
      console.log(line);
    });
  } finally {
    progress.stop();
  }
}

async function runCheckpoint(a: HeValidateArgs, samples: number | 'all' | undefined, seq: ReturnType<typeof sequenceCheckpoint>, log: (line: string) => void): Promise<void> {
  if (seq) return runSequenceHeValidate(seq, { ...a, samples, log });
  const report = await validate({
    checkpoint: a.checkpoint,
    samples,
    packing: (a.packing ?? 'auto') as PackingChoice,
    params: a.params ?? 'auto',
    scaleBits: a.scaleBits,
    trace: !!a.trace,
    mode: (a.mode ?? 'encrypt') as 'encrypt' | 'simulate',
    workers: a.workers,
    refresh: (a.refresh ?? 'none') as 'none' | 'client',
    log,
  });
  for (const line of reportText(report)) log(line);
  if (a.report) {
    // figures first: the markdown links them (the figure libraries load only here)
    const { writeHeValidateFigures } = await import('../report/he-figures.js');
    writeFileAtomic(a.report, reportMarkdown(report, await writeHeValidateFigures(a.report, report)));
    console.log(`report written to ${a.report}`);
  }
  if (a.json) console.log(JSON.stringify(reportJson(report)));
}

function parseSamples(v: number | string | undefined): number | 'all' | undefined {
  if (v === undefined) return undefined;
  if (v === 'all') return 'all';
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isInteger(n) || n < 0) throw new HepolyError(`--samples: expected a positive integer or "all", found ${JSON.stringify(v)}`);
  return n;
}
