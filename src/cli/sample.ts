import type { SampleOptions } from '../api/sample.js';
import { defineCommand } from './command.js';

/** `hepoly sample CHECKPOINT --prompt TEXT`: the library's sample (src/api/sample.ts); the prompt and its continuation on stdout. */
export async function runSample(a: SampleOptions & { json?: boolean }): Promise<void> {
  const { sample } = await import('../api/sample.js');
  const r = await sample(a);
  if (a.json) console.log(JSON.stringify(r));
  else process.stdout.write(`${r.prompt}${r.generated}\n`);
}

export const sampleCommand = defineCommand(
  'sample <checkpoint>',
  'generate text with a character-level language model (a text recipe, e.g. charlm-poly)',
  (y) =>
    y
      .positional('checkpoint', { type: 'string', demandOption: true })
      .option('prompt', { type: 'string', default: '', describe: 'text to continue (at most the model\'s context, only characters of its vocabulary)' })
      .option('length', { type: 'number', default: 200, describe: 'characters to generate' })
      .option('temperature', { type: 'number', default: 0.8, describe: 'sampling temperature; 0 picks the most likely character' })
      .option('seed', { type: 'number', default: 0, describe: 'random seed of the sampling' })
      .option('backend', { type: 'string' })
      .option('json', { type: 'boolean', default: false }),
  (a) => runSample({ checkpoint: a.checkpoint, prompt: a.prompt, length: a.length, temperature: a.temperature, seed: a.seed, backend: a.backend, json: a.json }),
);
