import type { PruneOptions } from '../api/prune.js';
import { integerFlag } from '../util/flags.js';
import { defineCommand } from './command.js';

/** The library's prune options (one declaration: src/api/prune.ts), plus what only the CLI has. */
export type PruneArgs = Omit<PruneOptions, 'log'> & { checkpoint: string; json?: boolean };

/** `hepoly prune CHECKPOINT`: the library's prune (src/api/prune.ts), its lines on stdout, --json last. */
export async function runPrune(a: PruneArgs): Promise<void> {
  const epochs = integerFlag('--epochs', a.epochs ?? 3, { min: 0, max: 10000 });
  const tile = integerFlag('--tile', a.tile ?? 1, { min: 1, max: 65536 });
  const { checkpoint, json, ...options } = a;
  const { prune } = await import('../api/prune.js');
  const result = await prune(checkpoint, { ...options, tile, epochs, log: (l) => console.log(l) });
  if (json) console.log(JSON.stringify(result));
}

export const pruneCommand = defineCommand(
  'prune <checkpoint>',
  'HE-aware pruning: remove whole units (ciphertexts) or small weights, then fine-tune with the mask fixed',
  (y) =>
    y
      .positional('checkpoint', { type: 'string', demandOption: true })
      .option('sparsity', { type: 'number', demandOption: true, describe: 'fraction of units (hepex) or weights (magnitude) to remove, in [0, 1)' })
      .option('method', { type: 'string', default: 'hepex', choices: ['hepex', 'magnitude'], describe: 'hepex: permute units and prune whole tiles; magnitude: smallest weights' })
      .option('tile', { type: 'number', default: 1, describe: 'units per tile (ciphertext); hepex prunes whole tiles' })
      .option('epochs', { type: 'number', default: 3, describe: 'fine-tuning epochs with the mask held fixed' })
      .option('lr', { type: 'number', describe: 'fine-tuning learning rate (default: a third of the recipe\'s)' })
      .option('expand', { type: 'boolean', default: true, describe: 'hepex: keep every weight of the surviving tiles' })
      .option('out', { type: 'string', describe: 'output checkpoint (default CHECKPOINT-METHOD-PERCENT)' })
      .option('overwrite', { type: 'boolean', default: false, describe: 'replace an existing checkpoint at --out' })
      .option('backend', { type: 'string' })
      .option('json', { type: 'boolean', default: false }),
  (a) => runPrune({ checkpoint: a.checkpoint, sparsity: a.sparsity, method: a.method, tile: a.tile, epochs: a.epochs, lr: a.lr, expand: a.expand, out: a.out, overwrite: a.overwrite, backend: a.backend, json: a.json }),
);
