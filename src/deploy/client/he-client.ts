import type { Context, KeyGenerator, Seal } from '../../he/seal.js';
import { CkksKeyHolder, keygenFromSecretKey } from '../../he/key-holder.js';
import { HepolyError } from '../../util/errors.js';
import { encodeInput } from '../../he/input-encoding.js';
import type { ClientArtifact } from '../artifact-format.js';
import { encodeFrames } from '../framing.js';
import { packInput, unpackOutput } from './layout.js';
import { createClientContext, loadClientSeal } from './seal-context.js';

/**
 * The data owner's side of a deployed model, for Node and browsers alike: it makes (or
 * restores) the keys, packs and encrypts one sample into the artifact's input layout, and
 * decrypts the output ciphertexts into logits. The secret key stays in this object; the only
 * way out is `exportKeys`, which exists so the owner can keep its keys in its own folder
 * (mode 0600) and reuse the key id the server already holds. It is never part of a request.
 */

/** What a client keeps locally to be the same client tomorrow. */
export interface ClientKeyMaterial {
  /** SEAL SecretKey bytes: local only */
  secretKey: Uint8Array;
  /** framed [public key, relinearization keys, Galois keys]: the exact bytes the server stores */
  evaluationKeys: Uint8Array;
}

export class HEClient {
  /** the key and encode steps every client shares (src/he/key-holder.ts) */
  #keys: CkksKeyHolder;
  readonly evaluationKeys: Uint8Array;
  /** sha256 of evaluationKeys (hex): the id the server files them under */
  readonly keyId: string;

  private constructor(
    readonly artifact: ClientArtifact,
    seal: Seal,
    private readonly context: Context,
    keygen: KeyGenerator,
    evaluationKeys: Uint8Array | null,
    keyId: string,
  ) {
    this.#keys = new CkksKeyHolder(seal, context, keygen, 2 ** artifact.params.scaleBits);
    this.evaluationKeys = evaluationKeys ?? this.#makeEvaluationKeys();
    this.keyId = keyId;
  }

  /** Fresh keys, or the ones a previous run exported (checked against the artifact's parameters). */
  static async create(artifact: ClientArtifact, keys?: ClientKeyMaterial): Promise<HEClient> {
    const seal = await loadClientSeal();
    const context = createClientContext(seal, artifact.params);
    let keygen: KeyGenerator;
    if (keys) {
      try {
        keygen = keygenFromSecretKey(seal, context, keys.secretKey);
      } catch (e) {
        context.delete();
        throw new HepolyError(
          `client keys: the stored secret key does not load with this artifact's CKKS parameters (${(e as Error).message}): the keys were made for another export. Use another --keys folder or delete this one`,
        );
      }
    } else keygen = seal.KeyGenerator(context);
    const client = new HEClient(artifact, seal, context, keygen, keys?.evaluationKeys ?? null, '');
    (client as { keyId: string }).keyId = await sha256Hex(client.evaluationKeys);
    return client;
  }

  /** The key material to keep locally (secret included: never send it anywhere). */
  exportKeys(): ClientKeyMaterial {
    return { secretKey: this.#keys.saveSecretKey(), evaluationKeys: this.evaluationKeys };
  }

  /**
   * Public, relinearization and Galois keys, serialized once, framed as the server stores them.
   * zstd-compressed and only for the artifact's rotation steps: these are the megabytes that make
   * re-sending keys per request unrealistic, so the server stores them under a key id.
   */
  #makeEvaluationKeys(): Uint8Array {
    const k = this.#keys.publicKeys(this.artifact.rotation_steps, true);
    return encodeFrames([k.publicKey, k.relinKeys, k.galoisKeys ?? new Uint8Array(0)]);
  }

  /** Samples one pass carries (1 but for batch, stacked and interleaved exports). */
  get samplesPerPass(): number {
    return this.artifact.packing.samples_per_pass ?? 1;
  }

  /** One preprocessed sample -> its input ciphertexts (seeded symmetric encryption: half the upload). */
  encrypt(x: ArrayLike<number>): Uint8Array[] {
    return this.encryptPass([x]);
  }

  /** Up to samplesPerPass preprocessed samples -> one pass's input ciphertexts (missing samples are zeros). */
  encryptPass(samples: ArrayLike<number>[]): Uint8Array[] {
    const m = this.samplesPerPass;
    if (samples.length < 1 || samples.length > m) throw new HepolyError(`encrypt: ${samples.length} samples for one pass, this export packs 1 to ${m}`);
    const per = this.artifact.preprocess.input_shape.reduce((a, b) => a * b, 1);
    const encoding = this.artifact.preprocess.input_encoding;
    const perIn = per * (encoding?.vocab ?? 1);
    const flat = new Float64Array(m * perIn);
    samples.forEach((v, s) => {
      if (v.length !== per) throw new HepolyError(`input: sample ${s} has ${v.length} values, the model takes ${per}`);
      flat.set(encodeInput(encoding, v, `input: sample ${s}`), s * perIn);
    });
    return packInput(this.artifact.input, this.artifact.slots, flat).map((v) => this.#encryptSlots(v));
  }

  /** The output ciphertexts of one sample -> its logits. */
  decrypt(outputs: Uint8Array[]): Float64Array {
    return this.decryptPass(outputs, 1)[0];
  }

  /** One pass's output ciphertexts -> the logits of its first `count` samples. */
  decryptPass(outputs: Uint8Array[], count: number): Float64Array[] {
    if (outputs.length !== this.artifact.output.ciphertexts) {
      throw new HepolyError(`server reply: ${outputs.length} output ciphertexts per pass, the client artifact expects ${this.artifact.output.ciphertexts}`);
    }
    // an empty part: a ciphertext the packing leaves out (its slots read as zeros)
    const slots = this.artifact.slots;
    const vecs = outputs.map((bytes, k) => (bytes.length ? this.#decryptSlots(bytes, `output ciphertext ${k}`) : new Float64Array(slots)));
    const all = unpackOutput(this.artifact.output, slots, vecs);
    const classes = all.length / this.samplesPerPass;
    return Array.from({ length: count }, (_, s) => all.slice(s * classes, (s + 1) * classes));
  }

  /**
   * A refresh round of a `--refresh client` export: each ciphertext the server handed out is
   * decrypted and encrypted again, slot for slot, fresh at the top level and the artifact's
   * scale. Layout-agnostic: the server's next segment reads the slots where they were. The
   * data owner sees these intermediate activations; the server still sees only ciphertexts.
   */
  refresh(cts: Uint8Array[]): Uint8Array[] {
    // an empty part (a ciphertext batch packing leaves out) goes back empty
    return cts.map((bytes, k) => (bytes.length ? this.#encryptSlots(this.#decryptSlots(bytes, `refresh ciphertext ${k}`)) : bytes));
  }

  #encryptSlots(v: Float64Array): Uint8Array {
    return this.#keys.encryptSlots(v, true);
  }

  #decryptSlots(bytes: Uint8Array, what: string): Float64Array {
    try {
      return this.#keys.decryptSlots(bytes);
    } catch (e) {
      throw new HepolyError(`server reply: ${what} does not deserialize with the artifact's parameters (${(e as Error).message})`);
    }
  }

  delete(): void {
    this.#keys.delete();
    this.context.delete();
  }
}

/** WebCrypto's sha256 (global in browsers and Node 20): the same key id on both sides. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const copy = new Uint8Array(bytes);
  const d = new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', copy));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}
