import { HepolyError } from '../util/errors.js';
import { type PruneMethod, type PruneSummary, pruneCheckpoint } from '../train/prune.js';

export interface PruneOptions {
  /** fraction of units (hepex) or weights (magnitude) to remove, in [0, 1) */
  sparsity: number;
  /** hepex (whole tiles of units, HE-aware) or magnitude (smallest weights); default hepex */
  method?: string;
  /** units per tile (ciphertext); default 1 */
  tile?: number;
  /** fine-tuning epochs with the mask held fixed; default 3 */
  epochs?: number;
  /** fine-tuning learning rate (default: a third of the recipe's) */
  lr?: number;
  /** hepex: keep every weight of the surviving tiles; default true */
  expand?: boolean;
  /** output checkpoint (default CHECKPOINT-METHOD-PERCENT) */
  out?: string;
  /** replace an existing checkpoint at `out` */
  overwrite?: boolean;
  backend?: string;
  log?: (line: string) => void;
}

/** HE-aware pruning, then fine-tuning with the mask held; resolves to what `hepoly prune --json` prints. */
export async function prune(checkpoint: string, o: PruneOptions): Promise<PruneSummary> {
  const method = (o.method ?? 'hepex') as PruneMethod;
  if (method !== 'hepex' && method !== 'magnitude') throw new HepolyError(`--method: expected hepex or magnitude, found ${JSON.stringify(o.method)}`, { exitCode: 2 });
  if (!(o.sparsity >= 0 && o.sparsity < 1)) throw new HepolyError(`--sparsity: expected a fraction in [0, 1), found ${o.sparsity}`, { exitCode: 2 });
  return pruneCheckpoint({
    checkpoint,
    out: o.out,
    overwrite: o.overwrite,
    spec: { method, sparsity: o.sparsity, tile: o.tile ?? 1, expand: o.expand ?? true },
    epochs: o.epochs ?? 3,
    lr: o.lr,
    backend: o.backend,
    log: o.log,
  });
}
