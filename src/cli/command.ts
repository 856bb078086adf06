import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';

/**
 * One `hepoly` command: its usage line, its one-line description, its options and the call into
 * the library. Each command file declares its own, so the options sit beside the code that reads
 * them; `commands.ts` lists them in the order `hepoly --help` shows.
 */
export function defineCommand<A>(
  command: string,
  describe: string,
  builder: (y: Argv) => Argv<A>,
  handler: (a: ArgumentsCamelCase<A>) => void | Promise<void>,
): CommandModule {
  // yargs types a module by its own arguments; the list of commands holds modules of different
  // arguments, which only the builder and handler above need to agree on
  return { command, describe, builder, handler } as unknown as CommandModule;
}
