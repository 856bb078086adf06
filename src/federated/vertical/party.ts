import { HepolyError } from '../../util/errors.js';
import { numericColumns, readPartyTable } from '../party-data.js';
import { joinRun, refuseToJoin, reportFailure } from '../session.js';
import type { PartyResult, PartyRunOptions } from '../horizontal/party.js';
import type { LocalColumns } from './common.js';
import type { Recipe } from '../../recipe/schema.js';
import { labelHolder } from './label-holder.js';
import { bank } from './bank.js';

/**
 * Vertical federated training (PV4FAD's setting): the label holder (the payment network) holds
 * the labels, its own columns and the CKKS secret key; each bank holds columns of the same
 * rows, matched by ID through ECDH-PSI (psi.ts). Under DP each bank noises its columns once per
 * ID (bank.ts, releaseColumns) and the rest of the run is post-processing of that release. Per
 * batch: every bank sends its bottom output X_b W_b, pairwise-masked among the banks, so the
 * label holder reads only their sum; the
 * label holder runs the top model and returns the gradient at the cut encrypted, the bank turns
 * it into its masked weight gradient under HE (he-gradient.ts), the label holder decrypts and
 * noises that, the bank unmasks it. Inference (validation, test) runs the same forward path.
 */

/** A vertical party's key and feature columns, checked against the recipe (the run's parties and `federate join` read them alike). */
export function readColumns(recipe: Recipe, recipeFile: string, index: number): LocalColumns {
  const fed = recipe.federated!;
  const holders = fed.parties.filter((p) => p.label);
  if (holders.length !== 1) {
    throw new HepolyError(`${recipeFile}: federated.parties: a vertical run needs exactly one party with label: true (the label holder), found ${holders.length}. Mark the party that holds ${recipe.data.source === 'csv' ? JSON.stringify(recipe.data.label) : 'the label'}`);
  }
  if (recipe.model.kind !== 'mlp' || recipe.model.hidden.length !== 1 || recipe.model.batchnorm) {
    throw new HepolyError(`${recipeFile}: model: a vertical split network is an mlp with one hidden layer (bottom maps, then the activation and the classifier at the label holder) and no batchnorm. Set model: {kind: mlp, hidden: [8], batchnorm: false}`);
  }
  const party = fed.parties[index];
  const field = `federated.parties[${index}]`;
  const table = readPartyTable(party.path, `${field}.path`, recipeFile);
  if (!party.key) throw new HepolyError(`${recipeFile}: ${field}.key: a vertical party names its ID column. Add key: COLUMN (one of ${table.columns.join(', ')})`);
  const keyCol = table.columns.indexOf(party.key);
  if (keyCol < 0) throw new HepolyError(`${table.file} (${field}.path in ${recipeFile}): no ID column ${JSON.stringify(party.key)} (${field}.key). Set key to one of ${table.columns.join(', ')}`);
  const label = recipe.data.source === 'csv' ? recipe.data.label : '';
  if (party.label && !table.columns.includes(label)) throw new HepolyError(`${table.file} (${field}.path in ${recipeFile}): the label holder has no label column ${JSON.stringify(label)} (data.label). Set data.label to its label column`);
  const features = party.features ?? table.columns.filter((c) => c !== party.key && c !== label);
  const missing = features.filter((f) => !table.columns.includes(f));
  if (missing.length) {
    throw new HepolyError(`${table.file} (${field}.features in ${recipeFile}): its columns differ from the recipe's: no column ${missing.map((m) => JSON.stringify(m)).join(', ')}. Set ${field}.features to columns of the file (${table.columns.join(', ')})`);
  }
  return { party, index, table, features, keyCol, x: numericColumns(table, features, `${field}.path`, recipeFile) };
}

export async function runVerticalParty(opts: PartyRunOptions): Promise<PartyResult> {
  const started = performance.now();
  const fed = opts.recipe.federated!;
  const index = fed.parties.findIndex((p) => p.name === opts.name);
  if (index < 0) throw new HepolyError(`--name ${opts.name}: not a party of ${opts.recipeFile} (federated.parties: ${fed.parties.map((p) => p.name).join(', ')}). Pass one of those names`, { exitCode: 2 });
  let local: LocalColumns;
  try {
    local = readColumns(opts.recipe, opts.recipeFile, index);
  } catch (e) {
    await refuseToJoin(opts.coordinator, opts.name, e);
    throw e;
  }
  const session = await joinRun(opts.coordinator, opts.name, { features: local.features, label: local.party.label });
  try {
    const r = local.party.label ? await labelHolder(opts, session, local) : await bank(opts, session, local);
    await session.client.post('/done', {});
    return { ...r, bytes_sent: session.client.bytesSent, bytes_received: session.client.bytesReceived, seconds: (performance.now() - started) / 1000 };
  } catch (e) {
    await reportFailure(session, e);
    throw e;
  }
}

