import type { PlanResult } from '../he/tiles/plan.js';
import { showProgress } from './progress.js';
import { fmtGiB } from '../util/format.js';
import type { PlanOptions } from '../api/plan.js';
import { defineCommand } from './command.js';

/** The library's plan options (src/api/plan.ts), plus what only the CLI has. */
export type HePlanArgs = Omit<PlanOptions, 'log'> & { checkpoint: string; json?: boolean };

/** `hepoly he-plan CHECKPOINT`: a table of the best packings; with --json one JSON object last. */
export async function runHePlan(a: HePlanArgs): Promise<void> {
  const { checkpoint, json, ...options } = a;
  const { plan } = await import('../api/plan.js');
  // --measure runs each candidate on SEAL (minutes): a bar on a terminal, a line every ~10 s in logs
  const progress = showProgress({ tty: !!process.stdout.isTTY && !json, task: 'he-plan' });
  const log = (l: string) => {
    progress.pause();
    console.log(l);
  };
  let r: PlanResult;
  try {
    r = await plan(checkpoint, { ...options, log });
  } finally {
    progress.stop();
  }
  for (const line of planTable(r)) console.log(line);
  if (json) console.log(JSON.stringify(r));
}

/** measured over predicted, the prediction brought to the measuring thread's speed */
export function latencyRatio(predictedMs: number, m: { latencyMs: number; threadSpeed: number }): number {
  return m.latencyMs / (predictedMs / m.threadSpeed);
}

function ms(v: number): string {
  return v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v < 10 ? 2 : 0)} ms`;
}

export function planTable(r: PlanResult): string[] {
  const measured = r.rows.some((x) => x.measured);
  const head = ['#', 'packing', 'samples/pass', 'cts in', 'rot keys', 'rotations', 'ct*ct', 'pt*ct', 'pred latency', 'pred per sample', 'pred memory'];
  if (measured) head.push('meas latency', 'raw ratio', 'thread speed', 'ratio', 'first pass', 'meas memory', 'ratio');
  const rows = r.rows.map((x, i) => {
    const row = [String(i + 1), x.name, String(x.samplesPerPass), String(x.ciphertextsIn), String(x.rotationKeys), String(x.counts.rotations), String(x.counts.ctCtMults), String(x.counts.ptMults), ms(x.predicted.latencyMs), ms(x.predicted.amortizedMs), fmtGiB(x.predicted.memoryBytes)];
    if (measured) {
      const m = x.measured;
      row.push(m ? ms(m.latencyMs) : '-', m ? (m.latencyMs / x.predicted.latencyMs).toFixed(2) : '-', m ? `${m.threadSpeed.toFixed(2)}x` : '-', m ? latencyRatio(x.predicted.latencyMs, m).toFixed(2) : '-', m ? (m.passes > 1 ? ms(m.firstPassMs) : 'same') : '-', m ? fmtGiB(m.memoryBytes) : '-', m ? (m.memoryBytes / x.predicted.memoryBytes).toFixed(2) : '-');
    }
    return row;
  });
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((row) => row[c].length)));
  const fmt = (row: string[]) => row.map((v, c) => (c === 1 ? v.padEnd(widths[c]) : v.padStart(widths[c]))).join('  ');
  const notes = measured
    ? [
        'measured latency: the fastest of up to 3 warm passes after the first, in a fresh worker (the first also grows its SEAL memory pools; one pass where the prediction is over a minute)',
        "thread speed: the measuring thread's speed over the planning thread's (the same SEAL rotation timed by each): on a shared host SEAL runs up to ~1.6x slower while a neighbour is busy; raw ratio = measured / predicted, ratio = measured / (predicted at the measuring thread's speed)",
      ]
    : [];
  return [
    `he-plan ${r.checkpoint}: goal ${r.goal}, memory limit ${fmtGiB(r.memoryLimit)}; latency = encrypt + evaluate + decrypt of one pass on one thread`,
    ...notes,
    fmt(head),
    ...rows.map(fmt),
    `choice: ${r.rows[0].name}`,
  ];
}

export const hePlanCommand = defineCommand(
  'he-plan <checkpoint>',
  'rank packings (batch, sample, stacked, interleaved) by predicted latency, time per sample or memory; --measure runs them',
  (y) =>
    y
      .positional('checkpoint', { type: 'string', demandOption: true })
      .option('goal', { type: 'string', default: 'latency', describe: 'latency | throughput | memory' })
      .option('memory', { type: 'string', default: '8GiB', describe: 'memory limit, e.g. 8GiB or 512MiB' })
      .option('measure', { type: 'boolean', default: false, describe: 'also run each shown candidate once on SEAL and report measured vs predicted' })
      .option('top', { type: 'number', describe: 'candidates to show (default 5)' })
      .option('calibrate', { type: 'boolean', default: false, describe: 'redo the node-seal micro-benchmark instead of using the cached one' })
      .option('trace', { type: 'boolean', default: false, describe: 'print every compiler pass by name with what it did' })
      .option('json', { type: 'boolean', default: false }),
  (a) => runHePlan({ checkpoint: a.checkpoint, goal: a.goal, memory: a.memory, measure: a.measure, top: a.top, calibrate: a.calibrate, trace: a.trace, json: a.json }),
);
