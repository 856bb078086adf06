import { writeFileAtomic } from '../util/atomic-file.js';
import { checkOutputFile } from '../util/output-guard.js';
import { HepolyError } from '../util/errors.js';
import { integerFlag, workersFlag } from '../util/flags.js';
import type { HeValidation, HeValidateOptions } from '../api/he-validate.js';
import { showProgress } from './progress.js';
import { defineCommand } from './command.js';

/**
 * Options of `hepoly he-validate`: the library's (src/api/he-validate.ts), with the choices as the
 * parser gives them (strings, checked by the library), plus what only the CLI has.
 */
export type HeValidateArgs = Omit<HeValidateOptions, 'log' | 'mode' | 'refresh'> & {
  checkpoint: string;
  mode?: string;
  refresh?: string;
  /** write the markdown report to this file */
  report?: string;
  json?: boolean;
  /** --queue redis://...: shards go to `hepoly worker`s (src/queue/) */
  queue?: string;
  shardSize?: number;
  runId?: string;
};

/**
 * `hepoly he-validate CHECKPOINT`: human output on stdout, the markdown report with --report,
 * and with --json one JSON object as the last stdout line. The run itself is the library's
 * (src/api/he-validate.ts); this prints and writes it.
 */
export async function runHeValidate(a: HeValidateArgs): Promise<void> {
  const samples = parseSamples(a.samples);
  if (a.report !== undefined && !a.report.endsWith('.md')) {
    throw new HepolyError(`--report ${a.report}: expected a markdown file name ending in .md`);
  }
  // checked before the encrypted run, which can take hours, not after it
  if (a.report !== undefined) checkOutputFile(a.report, '--report', (text) => /^# (he-validate|Encrypted validation)/.test(text));
  // a bar on a terminal, a line every ~10 s in logs: encrypted runs take minutes to hours
  const [{ heValidateReport, heValidationJson }, { reportText }, { queuedHeValidation }, { queueReportLines }] = await Promise.all([
    import('../api/he-validate.js'),
    import('../he/report.js'),
    import('../queue/run-validate.js'),
    import('../queue/report.js'),
  ]);
  const progress = showProgress({ tty: !!process.stdout.isTTY && !a.json, task: 'he-validate' });
  const log = (line: string) => {
    progress.pause();
    console.log(line);
  };
  let v: HeValidation;
  try {
    const run = a.queue ? (o: Parameters<typeof heValidateReport>[1]) => queuedHeValidation(a.checkpoint, o, { url: a.queue!, shardSize: a.shardSize, runId: a.runId }) : (o: Parameters<typeof heValidateReport>[1]) => heValidateReport(a.checkpoint, o);
    v = await run({
      samples,
      packing: a.packing,
      params: a.params,
      scaleBits: a.scaleBits,
      trace: a.trace,
      mode: a.mode as 'encrypt' | 'simulate' | undefined,
      workers: workersFlag(a.workers),
      workersPerSample: a.workersPerSample === undefined ? undefined : integerFlag('--workers-per-sample', a.workersPerSample, { min: 1, max: 1024 }),
      refresh: a.refresh as 'none' | 'client' | undefined,
      log,
      data: a.data,
    });
    const lines = [...reportText(v.report), ...queueReportLines(v.report.queue)];
    for (const line of lines) log(line);
    if (a.report) {
      writeFileAtomic(a.report, await markdownReport(v, a.report));
      console.log(`report written to ${a.report}`);
    }
  } finally {
    progress.stop();
  }
  if (a.json) console.log(JSON.stringify(v.report.queue ? { ...heValidationJson(v), queue: v.report.queue } : heValidationJson(v)));
}

/** --report: the markdown file */
async function markdownReport(v: HeValidation, file: string): Promise<string> {
  // figures first: the markdown links them (the figure libraries load only here)
  const [{ writeHeValidateFigures }, { reportMarkdown }] = await Promise.all([import('../report/he-figures.js'), import('../he/report.js')]);
  return reportMarkdown(v.report, await writeHeValidateFigures(file, v.report));
}

function parseSamples(v: number | string | undefined): number | 'all' | undefined {
  if (v === undefined) return undefined;
  if (v === 'all') return 'all';
  if (v === '' || !/^\d+$/.test(String(v)) || Number(v) < 1) {
    throw new HepolyError(`--samples: expected a positive integer or "all", found ${v === '' ? 'no value' : JSON.stringify(v)}`, { exitCode: 2 });
  }
  return integerFlag('--samples', v, { min: 1, max: Number.MAX_SAFE_INTEGER });
}

export const heValidateCommand = defineCommand(
  'he-validate <checkpoint>',
  'run the checkpoint on CKKS-encrypted inputs and compare with the plaintext model',
  (y) =>
    y
      .positional('checkpoint', { type: 'string', demandOption: true })
      .option('samples', { type: 'string', describe: 'held-out samples to encrypt (a number or "all")' })
      .option('packing', { type: 'string', default: 'auto', describe: 'auto (the cost model), batch (samples across slots), sample (one sample per pass: latency), token (transformers: a ciphertext per feature, token blocks; their default), stacked or stacked:M (M samples per ciphertext, in blocks), interleaved or interleaved:M (M samples innermost: every diagonal filled by all M)' })
      .option('params', { type: 'string', default: 'auto', describe: 'auto, or a JSON file {poly_modulus_degree, coeff_modulus_bits, scale_bits}' })
      .option('scale-bits', { type: 'number', describe: 'with --params auto: at least this CKKS scale in bits (20-40; more precision, maybe a larger ring)' })
      .option('mode', { type: 'string', default: 'encrypt', choices: ['encrypt', 'simulate'], describe: 'simulate: float64 with the same packing and rescale points, no encryption' })
      .option('trace', { type: 'boolean', default: false, describe: 'decrypt every layer (debug only) and report its error, level and scale' })
      .option('refresh', { type: 'string', choices: ['none', 'client'], describe: 'client: where the depth exceeds the chain, the client decrypts and re-encrypts at a fresh level (each refresh reported)' })
      .option('workers', { type: 'number', describe: 'server worker threads (default: one per core)' })
      .option('workers-per-sample', { type: 'number', describe: 'sample packing: threads that evaluate each sample together, for latency (a divisor of --workers; default 1: one sample per thread, for throughput)' })
      .option('data', { type: 'string', describe: "folder the checkpoint's relative data paths are read from (a moved checkpoint or data set)" })
      .option('report', { type: 'string', describe: 'write a markdown report to this file' })
      .option('queue', { type: 'string', describe: 'redis://[:PASSWORD@]HOST:PORT: shard the samples into BullMQ jobs for `hepoly worker`s (docs/queue.md)' })
      .option('shard-size', { type: 'number', describe: 'with --queue: samples per job (default 4)' })
      .option('run-id', { type: 'string', describe: 'with --queue: name the run; re-run with the same id to resume (state in .hepoly-runs/ID)' })
      .option('json', { type: 'boolean', default: false }),
  (a) =>
    runHeValidate({
      queue: a.queue,
      shardSize: a.shardSize,
      runId: a.runId,
      checkpoint: a.checkpoint,
      samples: a.samples,
      packing: a.packing,
      params: a.params,
      scaleBits: a.scaleBits,
      mode: a.mode,
      trace: a.trace,
      workers: a.workers,
      workersPerSample: a.workersPerSample,
      refresh: a.refresh,
      report: a.report,
      json: a.json,
      data: a.data,
    }),
);
