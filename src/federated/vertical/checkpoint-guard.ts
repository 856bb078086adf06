import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { shortPath } from '../../util/paths.js';
import { HepolyError } from '../../util/errors.js';

/** The state.json backend a vertical run's assembled checkpoint records (label-holder.ts). */
export const VERTICAL_BACKEND = 'federated-vertical';

/**
 * Commands that read a checkpoint's held-out split (eval, he-validate) cannot run on a vertical
 * federated checkpoint: its inputs are several parties' columns, which no single table holds
 * (and under DP the banks' columns the model saw exist only as their noised release). Its
 * held-out figures are the run's own cross-party inference. Says so, and where those are,
 * instead of failing on a missing column. A checkpoint whose state.json cannot be read is left
 * to the loader's own message.
 */
export function refuseVerticalCheckpoint(dir: string, command: string): void {
  const state = readJson(join(dir, 'state.json')) as { backend?: string } | null;
  if (state?.backend !== VERTICAL_BACKEND) return;
  const features = (readJson(join(dir, 'preprocess.json')) as { features?: string[] } | null)?.features ?? [];
  const parties = new Map<string, number>();
  for (const f of features) {
    const owner = f.includes('.') ? f.slice(0, f.indexOf('.')) : 'the label holder';
    parties.set(owner, (parties.get(owner) ?? 0) + 1);
  }
  const held = [...parties].map(([p, n]) => `${p}: ${n}`).join(', ');
  const where = shortPath(dir);
  throw new HepolyError(
    `${where}: a vertical federated checkpoint (hepoly federate, partition: vertical). Its inputs are columns of several parties (${held}) that no single table holds, so ${command} cannot read a held-out split for it. ` +
      `Its held-out figures come from the run's cross-party inference: test_accuracy and auprc in the \`hepoly federate --json\` output, val_accuracy and val_auprc per epoch in ${where}/metrics.csv. Run ${command} on a horizontal or centrally trained checkpoint`,
    { exitCode: 1 },
  );
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}
