import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { HepolyError } from '../util/errors.js';
import { COMMANDS } from './commands.js';

const NO_COMMAND = 'no command given';

/** The command line: parses arguments and calls the library; no logic of its own. */
export async function main(argv: string[]): Promise<number> {
  try {
    const parser = yargs(argv);
    await parser
      .scriptName('hepoly')
      .usage('$0 <command> [options]\n\nTrain polynomial neural networks that run under homomorphic encryption, and prove it.')
      .command(COMMANDS)
      .demandCommand(1, NO_COMMAND)
      .strict()
      .recommendCommands()
      .fail((msg, err) => {
        if (err) throw err;
        // the list is read from the registered commands, so a new command cannot be left out
        const commands = (parser as unknown as { getInternalMethods(): { getCommandInstance(): { getCommands(): string[] } } }).getInternalMethods().getCommandInstance().getCommands();
        const text = msg === NO_COMMAND ? `name a command: ${commands.join(', ')}` : msg;
        throw new HepolyError(`${text}\nRun \`hepoly --help\` for usage`, { exitCode: 2 });
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
    if ((e instanceof WebAssembly.RuntimeError && /Aborted/.test(e.message)) || (e instanceof Error && /std::bad_alloc/.test(e.message))) {
      // SEAL's wasm heap cannot grow past its limit; the abort carries no further detail
      process.stderr.write(
        'error: SEAL aborted: its WebAssembly memory ran out. Use smaller CKKS parameters (--params), fewer --workers or fewer --samples per run; for MLP and CNN checkpoints, also another --packing (sample needs the least memory; stacked and interleaved passes keep more diagonals encoded)\n',
      );
      if (process.env.HEPOLY_DEBUG) process.stderr.write(`${e.stack}\n`);
      return 1;
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
