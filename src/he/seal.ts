import SEALModule from 'node-seal';
import { HepolyError } from '../util/errors.js';
import { type HeParams, describeParams, TC128_MAX_BITS, totalBits } from './params.js';

/**
 * Loading node-seal (one WebAssembly instance per thread) and building a CKKS context from
 * `HeParams`. Everything SEAL allocates lives in the wasm heap, so every object made here has
 * an owner that calls `.delete()`.
 */

type SealLoader = typeof SEALModule extends { default: infer D extends () => Promise<unknown> } ? D : never;
// node-seal is a CommonJS bundle: depending on the loader the default import is the factory
// itself or a namespace holding it
const SEAL: SealLoader =
  typeof SEALModule === 'function' ? (SEALModule as unknown as SealLoader) : (SEALModule as unknown as { default: SealLoader }).default;
export type Seal = Awaited<ReturnType<SealLoader>>;
// node-seal's object types, named from the library itself (its deep .d.ts paths are not exports)
export type Context = ReturnType<Seal['Context']>;
export type ParmsIdType = Context['firstParmsId'];
export type CipherText = ReturnType<Seal['CipherText']>;
export type PlainText = ReturnType<Seal['PlainText']>;
export type Evaluator = ReturnType<Seal['Evaluator']>;
export type CKKSEncoder = ReturnType<Seal['CKKSEncoder']>;
export type KeyGenerator = ReturnType<Seal['KeyGenerator']>;
export type SecretKey = ReturnType<KeyGenerator['secretKey']>;
export type PublicKey = ReturnType<Seal['PublicKey']>;
export type RelinKeys = ReturnType<Seal['RelinKeys']>;
export type GaloisKeys = ReturnType<Seal['GaloisKeys']>;
export type Encryptor = ReturnType<Seal['Encryptor']>;
export type Decryptor = ReturnType<Seal['Decryptor']>;

let sealPromise: Promise<Seal> | undefined;

/**
 * A SEAL instance of its own, with a heap of its own: SEAL's pools never give memory back, so
 * work that grows a heap runs on an instance that is dropped whole afterwards.
 */
export function newSeal(): Promise<Seal> {
  return SEAL();
}

/** The thread's SEAL instance (loaded once; each worker thread has its own). */
export function loadSeal(): Promise<Seal> {
  sealPromise ??= SEAL();
  return sealPromise;
}

/** Per chain level: the parms id SEAL tags ciphertexts with, and the primes below it. */
export interface LevelInfo {
  level: number;
  parmsId: ParmsIdType;
  /** q0 .. q_level as bigint */
  primes: bigint[];
  /** log2 of their product: the largest integer a plaintext at this level holds */
  modulusBits: number;
}

/** A CKKS context plus the level table every evaluator needs. */
export class CkksContext {
  readonly levels: LevelInfo[];
  readonly topLevel: number;
  readonly slots: number;

  private constructor(
    readonly seal: Seal,
    readonly context: Context,
    readonly params: HeParams,
  ) {
    const levels: LevelInfo[] = [];
    let cd = context.firstContextData;
    for (;;) {
      const level = cd.chainIndex;
      const primes = Array.from(cd.parms.coeffModulus as BigUint64Array);
      levels[level] = { level, parmsId: cd.parmsId, primes, modulusBits: primes.reduce((a, q) => a + Math.log2(Number(q)), 0) };
      if (level === 0) break;
      cd = cd.nextContextData;
    }
    this.levels = levels;
    this.topLevel = levels.length - 1;
    this.slots = params.polyModulusDegree / 2;
  }

  static create(seal: Seal, params: HeParams): CkksContext {
    const N = params.polyModulusDegree;
    if (totalBits(params) > (TC128_MAX_BITS[N] ?? 0)) {
      throw new HepolyError(`CKKS parameters ${describeParams(params)} are not 128-bit secure`);
    }
    const parms = seal.EncryptionParameters(seal.SchemeType.ckks);
    parms.setPolyModulusDegree(N);
    let coeff;
    try {
      coeff = seal.CoeffModulus.Create(N, Int32Array.from(params.coeffModulusBits));
    } catch (e) {
      parms.delete();
      throw new HepolyError(`SEAL cannot make primes [${params.coeffModulusBits.join(', ')}] for N=${N} (${(e as Error).message}). Use prime sizes between 20 and 60 bits`);
    }
    parms.setCoeffModulus(coeff);
    coeff.delete();
    const context = seal.Context(parms, true, seal.SecurityLevel.tc128);
    parms.delete();
    if (!context.parametersSet()) {
      context.delete();
      throw new HepolyError(`SEAL rejects the CKKS parameters ${describeParams(params)} at 128-bit security`);
    }
    return new CkksContext(seal, context, params);
  }

  /** The prime dropped when rescaling a ciphertext at `level`. */
  prime(level: number): number {
    return Number(this.levels[level].primes[level]);
  }

  delete(): void {
    this.context.delete();
  }
}
