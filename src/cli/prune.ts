import { HepolyError } from '../util/errors.js';
import { type PruneMethod, pruneCheckpoint } from '../train/prune.js';

export interface PruneArgs {
  checkpoint: string;
  sparsity: number;
  method?: string;
  tile?: number;
  epochs?: number;
  lr?: number;
  expand?: boolean;
  out?: string;
  overwrite?: boolean;
  backend?: string;
  json?: boolean;
}

export async function runPrune(a: PruneArgs): Promise<void> {
  const method = (a.method ?? 'hepex') as PruneMethod;
  if (method !== 'hepex' && method !== 'magnitude') throw new HepolyError(`--method: expected hepex or magnitude, found ${JSON.stringify(a.method)}`, { exitCode: 2 });
  if (!(a.sparsity >= 0 && a.sparsity < 1)) throw new HepolyError(`--sparsity: expected a fraction in [0, 1), found ${a.sparsity}`, { exitCode: 2 });
  const result = await pruneCheckpoint({
    checkpoint: a.checkpoint,
    out: a.out,
    overwrite: a.overwrite,
    spec: { method, sparsity: a.sparsity, tile: a.tile ?? 1, expand: a.expand ?? true },
    epochs: a.epochs ?? 3,
    lr: a.lr,
    backend: a.backend,
    log: (l) => console.log(l),
  });
  if (a.json) console.log(JSON.stringify(result));
}
