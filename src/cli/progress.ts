import cliProgress from 'cli-progress';
import { setProgressSink, type ProgressEvent } from '../util/progress-event.js';
import type { TrainCallbacks } from '../train/callbacks.js';
import type { MetricsRow } from '../train/checkpoint.js';
import { shortPath } from '../util/paths.js';

const fmt = (x: number, d = 4) => (Number.isFinite(x) ? x.toFixed(d) : String(x));

export function epochLine(row: MetricsRow, epochs: number): string {
  return (
    `epoch ${row.epoch}/${epochs}  loss ${fmt(row.loss)}  acc ${fmt(row.accuracy)}  ` +
    `val_loss ${fmt(row.val_loss)}  val_acc ${fmt(row.val_accuracy)}  lr ${row.lr.toPrecision(3)}  ` +
    `${Math.round(row.samples_per_s)} samples/s  ${row.seconds.toFixed(1)}s`
  );
}

/**
 * Console reporting for `hepoly train`: a progress bar per epoch on a terminal, one plain line
 * per epoch otherwise (logs, CI), so both humans and log files read well.
 */
export function consoleCallbacks(out: (line: string) => void, tty: boolean): TrainCallbacks {
  let epochs = 0;
  let bar: cliProgress.SingleBar | null = null;
  return {
    onStart(info) {
      epochs = info.recipe.train.epochs;
      out(`backend: ${info.backend}`);
      out(
        `recipe ${info.recipe.name}: ${info.recipe.model.kind}, ${info.trainCount} train / ${info.valCount} validation` +
          `${info.testCount ? ` / ${info.testCount} test` : ''} samples, input [${info.graph.inputShape.join('x')}], ${info.graph.classes} classes -> ${shortPath(info.outDir)}`,
      );
      if (info.startEpoch > 0) out(`resuming after epoch ${info.startEpoch}`);
    },
    onEpochStart(epoch) {
      if (!tty) return;
      bar = new cliProgress.SingleBar(
        { format: `epoch ${epoch}/${epochs} [{bar}] {value}/{total} batches  loss {loss}  {eta_formatted} left`, hideCursor: true, clearOnComplete: true },
        cliProgress.Presets.shades_classic,
      );
      bar.start(1, 0, { loss: '-' });
    },
    onBatch(_epoch, batch, batches, loss) {
      if (!bar) return;
      bar.setTotal(batches);
      if (batch % 5 === 0 || batch === batches) bar.update(batch, { loss: fmt(loss) });
    },
    onEpoch(row) {
      bar?.stop();
      bar = null;
      out(epochLine(row, epochs));
    },
    onMessage(text) {
      bar?.stop();
      bar = null;
      out(text);
    },
    onEnd(r) {
      out(
        `done: train_acc ${fmt(r.train_accuracy)}  val_acc ${fmt(r.val_accuracy)}${r.test_accuracy !== null ? `  test_acc ${fmt(r.test_accuracy)}` : ''}  ` +
          `${Math.round(r.samples_per_s)} samples/s  checkpoint ${shortPath(r.checkpoint)}`,
      );
    },
  };
}

export interface ProgressDisplayOptions {
  /** a bar (terminal) or a line every `intervalMs` (logs) */
  tty: boolean;
  stream?: NodeJS.WritableStream;
  /** label of the log lines, e.g. "he-validate" */
  task: string;
  intervalMs?: number;
  /** injectable clock (tests) */
  now?: () => number;
}

export interface ProgressDisplay {
  /** clears the bar before a log line is printed; the next event redraws it */
  pause(): void;
  stop(): void;
}

/** "1m05s", "12s", "2h03m" */
export function fmtDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Time left at the stage's rate so far; null before anything is done. */
export function etaMs(elapsedMs: number, done: number, total: number): number | null {
  return done > 0 ? (elapsedMs / done) * Math.max(0, total - done) : null;
}

export function progressLine(task: string, e: ProgressEvent, elapsedMs: number, stageMs: number): string {
  const eta = etaMs(stageMs, e.done, e.total);
  return `${task}: ${e.stage} ${e.done}/${e.total} ${e.unit}${e.detail ? ` (${e.detail})` : ''}, elapsed ${fmtDuration(elapsedMs)}${eta === null ? '' : `, ETA ${fmtDuration(eta)}`}`;
}

/**
 * Shows the library's progress events (src/util/progress-event.ts) for one command: a bar per
 * stage on a terminal, else one line at most every ~10 s, so a log of an hour-long encrypted
 * run shows it is alive and when it should end, without a line per sample.
 * HEPOLY_PROGRESS_SECONDS changes the interval of the lines (0: every event).
 */
export function showProgress(o: ProgressDisplayOptions): ProgressDisplay {
  const now = o.now ?? (() => performance.now());
  const stream = o.stream ?? process.stdout;
  const env = Number(process.env.HEPOLY_PROGRESS_SECONDS);
  const interval = o.intervalMs ?? (Number.isFinite(env) && process.env.HEPOLY_PROGRESS_SECONDS !== '' ? env * 1000 : 10000);
  const start = now();
  let stage = '';
  let stageStart = start;
  let lastEvent = start;
  let lastLine = start;
  let bar: cliProgress.SingleBar | null = null;
  const onEvent = (e: ProgressEvent) => {
    const t = now();
    if (e.stage !== stage) {
      // a stage reported at done 0 starts now; one first seen later began where the previous event left off
      stage = e.stage;
      stageStart = e.done === 0 ? t : lastEvent;
      bar?.stop();
      bar = null;
    }
    lastEvent = t;
    if (!o.tty) {
      if (t - lastLine >= interval) {
        lastLine = t;
        stream.write(`${progressLine(o.task, e, t - start, t - stageStart)}\n`);
      }
      return;
    }
    if (!bar) {
      bar = new cliProgress.SingleBar(
        { stream, format: `${e.stage} [{bar}] {value}/{total} ${e.unit}{detail}  elapsed {elapsed}  ETA {left}`, hideCursor: true, clearOnComplete: true },
        cliProgress.Presets.shades_classic,
      );
      bar.start(e.total, e.done, { detail: '', elapsed: '0s', left: '-' });
    }
    const eta = etaMs(t - stageStart, e.done, e.total);
    bar.setTotal(e.total);
    bar.update(e.done, { detail: e.detail ? ` (${e.detail})` : '', elapsed: fmtDuration(t - start), left: eta === null ? '-' : fmtDuration(eta) });
  };
  const previous = setProgressSink(onEvent);
  return {
    pause() {
      bar?.stop();
      bar = null;
    },
    stop() {
      bar?.stop();
      bar = null;
      setProgressSink(previous);
    },
  };
}
