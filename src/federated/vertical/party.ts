import { HepolyError } from '../../util/errors.js';
import type { PartyRunOptions, PartyResult } from '../horizontal/party.js';

export async function runVerticalParty(_opts: PartyRunOptions): Promise<PartyResult> {
  throw new HepolyError('vertical federated training is not built yet');
}
