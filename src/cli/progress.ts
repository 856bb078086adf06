import cliProgress from 'cli-progress';
import type { TrainCallbacks } from '../train/callbacks.js';
import type { MetricsRow } from '../train/checkpoint.js';
import { shortPath } from '../recipe/load.js';

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
