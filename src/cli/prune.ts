import { prune } from '../api/prune.js';
import { integerFlag } from './args.js';

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

/** `hepoly prune CHECKPOINT`: the library's prune (src/api/prune.ts), its lines on stdout, --json last. */
export async function runPrune(a: PruneArgs): Promise<void> {
  const epochs = integerFlag('--epochs', a.epochs ?? 3, { min: 0, max: 10000 });
  const tile = integerFlag('--tile', a.tile ?? 1, { min: 1, max: 65536 });
  const result = await prune(a.checkpoint, {
    sparsity: a.sparsity,
    method: a.method,
    tile,
    epochs,
    lr: a.lr,
    expand: a.expand,
    out: a.out,
    overwrite: a.overwrite,
    backend: a.backend,
    log: (l) => console.log(l),
  });
  if (a.json) console.log(JSON.stringify(result));
}
