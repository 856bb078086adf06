import { join } from 'node:path';
import { shortPath } from '../util/paths.js';

/**
 * The report `train` writes into its checkpoint at the end. A report that cannot be made
 * (a teacher moved, a figure library failing) must not fail a finished training run: it is
 * reported as a note, with the command that makes the report later.
 * The report modules (vega, resvg) are loaded only here, not by everyone who imports the trainer.
 */
export async function reportAfterTraining(checkpointDir: string, note: (text: string) => void): Promise<void> {
  try {
    const { writeReport } = await import('./write.js');
    const r = await writeReport(checkpointDir);
    note(`report: ${shortPath(join(r.dir, 'report.html'))}`);
  } catch (e) {
    note(`note: the training report was not written (${(e as Error).message.split('\n')[0]}); make it with \`hepoly report ${shortPath(checkpointDir)}\``);
  }
}
