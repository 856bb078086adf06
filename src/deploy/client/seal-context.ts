import SEALModule from 'node-seal';
import type { Context, Seal } from '../../he/seal.js';
import type { HeParams } from '../../he/params.js';
import { HepolyError } from '../../util/errors.js';

/**
 * SEAL for the client path, in Node and in a browser. It imports only node-seal (whose
 * `browser` build a bundler picks) and no module that touches node:fs, which is why it does
 * not reuse src/he/seal.ts (its parameter checks read files). The artifact's parameters were
 * checked at export; SEAL's own tc128 check below refuses anything insecure anyway.
 */

type SealLoader = () => Promise<Seal>;
// node-seal is a UMD bundle: the default import is the factory or a namespace holding it
const SEAL: SealLoader =
  typeof SEALModule === 'function' ? (SEALModule as unknown as SealLoader) : (SEALModule as unknown as { default: SealLoader }).default;

let loaded: Promise<Seal> | undefined;

export function loadClientSeal(): Promise<Seal> {
  loaded ??= SEAL();
  return loaded;
}

export function createClientContext(seal: Seal, params: HeParams): Context {
  const parms = seal.EncryptionParameters(seal.SchemeType.ckks);
  try {
    parms.setPolyModulusDegree(params.polyModulusDegree);
    const coeff = seal.CoeffModulus.Create(params.polyModulusDegree, Int32Array.from(params.coeffModulusBits));
    parms.setCoeffModulus(coeff);
    coeff.delete();
  } catch (e) {
    parms.delete();
    throw new HepolyError(`client artifact: params: SEAL cannot build N=${params.polyModulusDegree}, primes [${params.coeffModulusBits.join(', ')}] (${(e as Error).message}). Export the artifact again`);
  }
  const context = seal.Context(parms, true, seal.SecurityLevel.tc128);
  parms.delete();
  if (!context.parametersSet()) {
    context.delete();
    throw new HepolyError(`client artifact: params: SEAL rejects N=${params.polyModulusDegree}, primes [${params.coeffModulusBits.join(', ')}] at 128-bit security. Export the artifact again`);
  }
  return context;
}
