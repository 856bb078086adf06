import { CkksContext, newSeal } from '../../he/seal.js';
import type { HeParams } from '../../he/params.js';
import { HttpError } from './http-util.js';

/**
 * What the server checks before any byte reaches a worker: uploaded keys load as SEAL keys of
 * the artifact's parameters and cover its rotation steps; input ciphertexts load, are fresh
 * (size 2, top level) and carry the artifact's scale. A worker that met a bad ciphertext would
 * fail with SEAL's message or, worse, compute garbage; here the client gets a 400 that says
 * which part is wrong. Only public material is ever loaded: this thread has no secret key.
 */


export class WireChecks {
  private constructor(
    private readonly ctx: CkksContext,
    private readonly rotationSteps: number[],
    private readonly inputCts: number,
  ) {}

  static async create(params: HeParams, rotationSteps: number[], inputCts: number): Promise<WireChecks> {
    const seal = await newSeal();
    return new WireChecks(CkksContext.create(seal, params), rotationSteps, inputCts);
  }

  /**
   * A key upload: framed [public key, relinearization keys, Galois keys (empty: none)], read
   * part by part (`part(k)`), so only the part being loaded is in memory.
   */
  checkKeys(count: number, part: (k: number) => Uint8Array): void {
    if (count !== 3) throw new HttpError(400, `POST /v1/keys: expected 3 parts (public key, relinearization keys, Galois keys), found ${count}`);
    const seal = this.ctx.seal;
    const p = this.ctx.params;
    const wrongParams = `keys for other CKKS parameters (this model uses N=${p.polyModulusDegree}, primes [${p.coeffModulusBits.join(', ')}]). Make the keys with this model's client artifact`;
    this.load('public key', () => seal.PublicKey(), part(0), wrongParams);
    this.load('relinearization keys', () => seal.RelinKeys(), part(1), wrongParams);
    if (!this.rotationSteps.length) return;
    const galois = part(2);
    if (!galois.length) throw new HttpError(400, `POST /v1/keys: Galois keys: missing; this model rotates by ${this.rotationSteps.length} steps. Make the keys with this model's client artifact`);
    const gk = seal.GaloisKeys();
    try {
      gk.loadArray(this.ctx.context, galois);
    } catch (e) {
      gk.delete();
      throw new HttpError(400, `POST /v1/keys: Galois keys: do not load (${sealMessage(e)}): ${wrongParams}`);
    }
    const missing = this.rotationSteps.filter((s) => !gk.hasKey(galoisElement(s, p.polyModulusDegree)));
    gk.delete();
    if (missing.length) {
      throw new HttpError(400, `POST /v1/keys: Galois keys: no key for rotation steps ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ', ...' : ''}. Make the keys with this model's client artifact (its rotation_steps)`);
    }
  }

  private load(what: string, make: () => { loadArray(c: CkksContext['context'], b: Uint8Array): void; delete(): void }, bytes: Uint8Array, fix: string): void {
    const obj = make();
    try {
      obj.loadArray(this.ctx.context, bytes);
    } catch (e) {
      throw new HttpError(400, `POST /v1/keys: ${what}: do not load (${sealMessage(e)}): ${fix}`);
    } finally {
      obj.delete();
    }
  }

  /** One sample's input ciphertexts, as the client artifact's layout makes them. */
  checkInputs(cts: Uint8Array[], sample: number): void {
    if (cts.length !== this.inputCts) throw new HttpError(400, `POST /v1/predict: sample ${sample}: ${cts.length} ciphertexts, this model takes ${this.inputCts} per sample`);
    cts.forEach((bytes, k) => this.checkFresh(bytes, `POST /v1/predict: sample ${sample}, ciphertext ${k}`));
  }

  /** A fresh encryption under these parameters: size 2, the top level, the artifact's scale (inputs, and re-encrypted refresh rounds). */
  checkFresh(bytes: Uint8Array, where: string): void {
    const seal = this.ctx.seal;
    const want = this.ctx.params.scaleBits;
    const ct = seal.CipherText();
    try {
      try {
        ct.loadArray(this.ctx.context, bytes);
      } catch (e) {
        throw new HttpError(400, `${where}: does not deserialize with this model's CKKS parameters (${sealMessage(e)})`);
      }
      const level = ct.coeffModulusSize - 1;
      if (ct.size !== 2) throw new HttpError(400, `${where}: size ${ct.size}, expected a fresh ciphertext of size 2`);
      if (level !== this.ctx.topLevel) throw new HttpError(400, `${where}: at level ${level}, expected a fresh encryption at level ${this.ctx.topLevel}`);
      const bits = Math.log2(ct.scale);
      if (Math.abs(bits - want) > 1e-6) throw new HttpError(400, `${where}: scale 2^${bits.toFixed(2)}, expected 2^${want} (encode at the client artifact's scale_bits)`);
    } finally {
      ct.delete();
    }
  }

  delete(): void {
    this.ctx.delete();
  }
}

/** SEAL's Galois element for a left rotation by `step` slots: 3^step mod 2N. */
export function galoisElement(step: number, N: number): number {
  const m = 2 * N;
  let e = 1;
  for (let k = 0; k < step; k++) e = (e * 3) % m;
  return e;
}

function sealMessage(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.length > 200 ? `${m.slice(0, 200)}...` : m;
}
