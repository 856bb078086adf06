import { decodeFrames } from '../../src/deploy/framing.js';
import type { HeParams } from '../../src/he/params.js';
import { type Context, newSeal, type Seal } from '../../src/he/seal.js';

/**
 * Is a byte string a SEAL SecretKey for these parameters? Each candidate (the value, and each
 * part when it is a hepoly framed body) is loaded as a SecretKey. A failed load can leave a
 * SEAL heap corrupted (test/helpers/secret-scan.ts saw it), so after any failure the next
 * candidate gets a fresh SEAL instance with a heap of its own. SEAL's loader rejects anything
 * that does not open with its header magic (0xA15E) before reading further, so such candidates
 * are counted as rejected without a load (a fresh SEAL instance per JSON field costs seconds).
 * A SecretKey is read and checked against the key level of the context only, so each fresh
 * instance builds its context without the modulus-switching chain below it (half the cost of
 * a full CKKS context, paid once per failed load).
 */
export class SecretKeyLoader {
  private seal: Seal | null = null;
  private ctx: Context | null = null;
  /** byte strings checked, and of them those loaded into SEAL (they carry SEAL's header) */
  candidates = 0;
  loads = 0;

  constructor(private readonly params: HeParams) {}

  /** Names of the candidates in `bytes` that load as a SecretKey. */
  async secretKeysIn(path: string, bytes: Uint8Array): Promise<string[]> {
    const candidates: { path: string; bytes: Uint8Array }[] = [{ path, bytes }];
    try {
      decodeFrames(bytes, path).forEach((p, i) => candidates.push({ path: `${path} part ${i}`, bytes: p }));
    } catch {
      // not framed: the value alone
    }
    const found: string[] = [];
    for (const c of candidates) {
      this.candidates++;
      if (c.bytes.length >= 16 && c.bytes[0] === 0x5e && c.bytes[1] === 0xa1 && (await this.loads_(c.bytes))) found.push(c.path);
    }
    return found;
  }

  private async loads_(bytes: Uint8Array): Promise<boolean> {
    if (!this.seal || !this.ctx) {
      this.seal = await newSeal();
      this.ctx = keyLevelContext(this.seal, this.params);
    }
    this.loads++;
    const sk = this.seal.SecretKey();
    try {
      sk.loadArray(this.ctx, Uint8Array.from(bytes));
      sk.delete();
      return true;
    } catch {
      this.seal = null; // a fresh heap for the next one
      this.ctx = null;
      return false;
    }
  }
}

/**
 * A CKKS context for `params` with its key level and first data level only (no modulus-switching
 * chain): all a SecretKey load reads and checks against, at half the cost of a full context.
 */
export function keyLevelContext(seal: Seal, params: HeParams): Context {
  const parms = seal.EncryptionParameters(seal.SchemeType.ckks);
  parms.setPolyModulusDegree(params.polyModulusDegree);
  const coeff = seal.CoeffModulus.Create(params.polyModulusDegree, Int32Array.from(params.coeffModulusBits));
  parms.setCoeffModulus(coeff);
  coeff.delete();
  const context = seal.Context(parms, false, seal.SecurityLevel.tc128);
  parms.delete();
  if (!context.parametersSet()) throw new Error(`SEAL rejects the CKKS parameters ${JSON.stringify(params)}`);
  return context;
}
