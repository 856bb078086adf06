import { shortPath } from '../util/paths.js';
import { HepolyError } from '../util/errors.js';
import type { Recipe } from '../recipe/schema.js';
import { defineCommand } from './command.js';

/**
 * `hepoly federate RECIPE` (every role on this machine), `hepoly federate coordinator RECIPE
 * --port P` and `hepoly federate party RECIPE --name N --coordinator URL` (one role each), and
 * `hepoly federate join RECIPE` (a vertical run's joined table, for eval, he-validate, export).
 */
export interface FederateArgs {
  target: string;
  recipe?: string;
  set?: string[];
  out?: string;
  port?: number;
  host?: string;
  name?: string;
  coordinator?: string;
  backend?: string;
  json?: boolean;
}

async function federatedRecipe(path: string, set: string[] | undefined): Promise<{ recipe: Recipe; file: string }> {
  const { loadRecipe } = await import('../recipe/load.js');
  const { recipe, file } = loadRecipe(path, set ?? []);
  if (!recipe.federated) throw new HepolyError(`${shortPath(file)}: no federated section. Add federated: {partition, parties, ...} (see docs/federated.md), or train it with hepoly train`);
  return { recipe, file };
}

export async function runFederate(a: FederateArgs): Promise<void> {
  if (a.target === 'coordinator') return runCoordinatorRole(a);
  if (a.target === 'party') return runPartyRole(a);
  if (a.target === 'join') return runJoin(a);
  if (a.recipe) throw new HepolyError(`federate ${a.target} ${a.recipe}: expected \`federate RECIPE\`, \`federate coordinator RECIPE\`, \`federate party RECIPE\` or \`federate join RECIPE\``, { exitCode: 2 });
  const { launchFederation } = await import('../federated/launcher.js');
  const result = await launchFederation({ recipe: a.target, set: a.set, out: a.out, log: (l) => console.log(l) });
  const fmt = (v: number | null, d = 4) => (v === null || Number.isNaN(v) ? 'n/a' : v.toFixed(d));
  console.log(
    `${result.partition} federation of ${result.parties} parties, ${result.rounds} rounds: val_accuracy ${fmt(result.val_accuracy)}, test_accuracy ${fmt(result.test_accuracy)}, auprc ${fmt(result.auprc)}` +
      (result.epsilon !== null ? `, (epsilon ${result.epsilon.toFixed(3)}, delta ${result.delta})` : '') +
      `; ${(result.bytes_per_round / 1e6).toFixed(2)} MB per round, ${result.seconds_per_round.toFixed(2)} s per round${result.checkpoint ? `; checkpoint ${shortPath(result.checkpoint)}` : ''}`,
  );
  if (a.json) {
    const { party_results: _omit, ...rest } = result;
    console.log(JSON.stringify(rest));
  }
}

/** `federate join RECIPE [--out FILE]`: the joined table a vertical checkpoint's eval, he-validate and export read. */
async function runJoin(a: FederateArgs): Promise<void> {
  if (!a.recipe) throw new HepolyError('federate join: name the recipe: hepoly federate join RECIPE [--out FILE]', { exitCode: 2 });
  const { recipe, file } = await federatedRecipe(a.recipe, a.set);
  if (recipe.federated!.partition !== 'vertical') {
    throw new HepolyError(`${shortPath(file)}: federated.partition: horizontal: its parties hold rows of the same columns, so there is nothing to join; federate join is for partition: vertical`, { exitCode: 2 });
  }
  const { writeJoinedTable } = await import('../federated/vertical/joined-table.js');
  const t = writeJoinedTable(recipe, shortPath(file), a.out);
  const gaps = Object.entries(t.unmatched).map(([bank, n]) => `${bank} lacks ${n} IDs (column means there)`).join(', ');
  console.log(`joined table ${shortPath(t.file)}: ${t.rows} rows, ${t.columns.length - 1} feature columns + ${t.columns[t.columns.length - 1]}${gaps ? `; ${gaps}` : ''}. It holds every party's columns: keep it where only a party allowed to see them all can read it`);
  if (a.json) console.log(JSON.stringify(t));
}

async function runCoordinatorRole(a: FederateArgs): Promise<void> {
  if (!a.recipe) throw new HepolyError('federate coordinator: name the recipe: hepoly federate coordinator RECIPE --port P', { exitCode: 2 });
  const { recipe } = await federatedRecipe(a.recipe, a.set);
  const { Coordinator } = await import('../federated/coordinator.js');
  const fed = recipe.federated!;
  const c = new Coordinator({ parties: fed.parties.map((p) => p.name), polyModulusDegree: fed.he.poly_modulus_degree, roundTimeoutS: fed.round_timeout });
  const url = await c.listen(a.port ?? 8470, a.host ?? '127.0.0.1');
  console.log(`coordinator listening on ${url} for ${fed.parties.map((p) => p.name).join(', ')}`);
  await c.finished;
  c.close();
  console.log(JSON.stringify({ role: 'coordinator', bytes_in: c.bytesIn, bytes_out: c.bytesOut, parties_left: c.aliveParties }));
}

async function runPartyRole(a: FederateArgs): Promise<void> {
  if (!a.recipe || !a.name || !a.coordinator) {
    throw new HepolyError('federate party: usage: hepoly federate party RECIPE --name NAME --coordinator http://HOST:PORT', { exitCode: 2 });
  }
  const { recipe, file } = await federatedRecipe(a.recipe, a.set);
  const opts = { recipe, recipeFile: shortPath(file), name: a.name, coordinator: a.coordinator.replace(/\/$/, ''), outDir: a.out, backend: a.backend, log: (l: string) => console.log(l) };
  const result =
    recipe.federated!.partition === 'vertical'
      ? await (await import('../federated/vertical/party.js')).runVerticalParty(opts)
      : await (await import('../federated/horizontal/party.js')).runHorizontalParty(opts);
  if (a.json) console.log(JSON.stringify(result));
}

export const federateCommand = defineCommand(
  'federate <target> [recipe]',
  'federated training: `federate RECIPE` runs every role here as separate processes; `federate coordinator RECIPE --port P` and `federate party RECIPE --name N --coordinator URL` run one role; `federate join RECIPE` writes a vertical run\'s joined table',
  (y) =>
    y
      .positional('target', { type: 'string', demandOption: true, describe: 'a recipe with a federated section, or the role: coordinator | party | join' })
      .positional('recipe', { type: 'string', describe: 'the recipe, after a role' })
      .option('set', { type: 'string', array: true, describe: 'override a recipe key (repeatable), passed to every role' })
      .option('out', { type: 'string', describe: 'checkpoint directory of the federated model (default checkpoints/<name>); join: the table file (default joined.csv beside data.path)' })
      .option('port', { type: 'number', describe: 'coordinator: port to listen on (0: any free port; default 8470)' })
      .option('host', { type: 'string', describe: 'coordinator: address to listen on (default 127.0.0.1; 0.0.0.0 to serve other machines)' })
      .option('name', { type: 'string', describe: 'party: its name in federated.parties' })
      .option('coordinator', { type: 'string', describe: 'party: the coordinator URL, e.g. http://127.0.0.1:8470' })
      .option('backend', { type: 'string' })
      .option('json', { type: 'boolean', default: false, describe: 'print a JSON object as the last line' }),
  (a) => runFederate({ target: a.target, recipe: a.recipe, set: a.set, out: a.out, port: a.port, host: a.host, name: a.name, coordinator: a.coordinator, backend: a.backend, json: a.json }),
);
