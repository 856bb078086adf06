import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { HepolyError } from '../util/errors.js';
import { runTrain } from './train.js';
import { runEval } from './eval.js';
import { runSummary } from './summary.js';

/** The command line: parses arguments and calls the library; no logic of its own. */
export async function main(argv: string[]): Promise<number> {
  try {
    await yargs(argv)
      .scriptName('hepoly')
      .usage('$0 <command> [options]\n\nTrain polynomial neural networks that run under homomorphic encryption, and prove it.')
      .command(
        'train <recipe>',
        'train a recipe into a checkpoint',
        (y) =>
          y
            .positional('recipe', { type: 'string', demandOption: true, describe: 'recipe YAML file (or the name of a shipped recipe)' })
            .option('set', { type: 'string', array: true, describe: 'override a recipe key, e.g. --set train.epochs=3 (repeatable)' })
            .option('out', { type: 'string', describe: 'checkpoint directory (default checkpoints/<name>)' })
            .option('resume', { type: 'boolean', default: false, describe: 'continue from the last completed epoch' })
            .option('backend', { type: 'string', describe: 'force a tfjs backend: tensorflow-gpu, tensorflow, wasm or cpu' })
            .option('json', { type: 'boolean', default: false, describe: 'print a JSON object as the last line' }),
        (a) => runTrain({ recipe: a.recipe, set: a.set, out: a.out, resume: a.resume, json: a.json, backend: a.backend }),
      )
      .command(
        'eval <checkpoint>',
        'accuracy and loss on the held-out split (test set, else validation)',
        (y) =>
          y
            .positional('checkpoint', { type: 'string', demandOption: true })
            .option('backend', { type: 'string' })
            .option('json', { type: 'boolean', default: false }),
        (a) => runEval({ checkpoint: a.checkpoint, json: a.json, backend: a.backend }),
      )
      .command(
        'summary <checkpoint>',
        'layers, shapes, parameters, activation ranges and HE depth',
        (y) => y.positional('checkpoint', { type: 'string', demandOption: true }).option('json', { type: 'boolean', default: false }),
        (a) => runSummary({ checkpoint: a.checkpoint, json: a.json }),
      )
      .demandCommand(1, 'name a command: train, eval, summary')
      .strict()
      .recommendCommands()
      .fail((msg, err) => {
        if (err) throw err;
        throw new HepolyError(`${msg}\nRun \`hepoly --help\` for usage`, { exitCode: 2 });
      })
      .help()
      .version()
      .parseAsync();
    return 0;
  } catch (e) {
    if (e instanceof HepolyError) {
      process.stderr.write(`error: ${e.message}\n`);
      if (process.env.HEPOLY_DEBUG) process.stderr.write(`${e.stack}\n`);
      return e.exitCode;
    }
    process.stderr.write(`internal error (please report it): ${(e as Error)?.stack ?? String(e)}\n`);
    return 70;
  }
}

export function cli(): void {
  main(hideBin(process.argv)).then((code) => {
    process.exitCode = code;
  });
}
