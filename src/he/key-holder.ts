import type { CKKSEncoder, Context, Decryptor, Encryptor, KeyGenerator, PlainText, Seal, SecretKey } from './seal.js';

/**
 * The key and encode steps every client shares (he-validate's HEClient in src/he/client.ts and
 * the deployed model's client in src/deploy/client/he-client.ts): one secret key, the public
 * material derived from it, and encrypt / decrypt of slot vectors. The secret key stays in
 * `#private` fields; `saveSecretKey` exists only for a data owner that keeps its own keys on
 * disk (`hepoly predict --keys`), and neither client passes it anywhere else. Browser-safe:
 * SEAL comes in from the caller, nothing here loads files.
 */

export interface PublicKeyBytes {
  publicKey: Uint8Array;
  relinKeys: Uint8Array;
  /** null when there is no rotation step to make a key for */
  galoisKeys: Uint8Array | null;
}

/** A key generator for a stored secret key; SEAL's own error when the bytes do not load with `context`. */
export function keygenFromSecretKey(seal: Seal, context: Context, secretKey: Uint8Array): KeyGenerator {
  const sk = seal.SecretKey();
  try {
    sk.loadArray(context, secretKey);
    return seal.KeyGenerator(context, sk);
  } finally {
    sk.delete();
  }
}

export class CkksKeyHolder {
  #secretKey: SecretKey;
  #keygen: KeyGenerator;
  #encryptor: Encryptor;
  #decryptor: Decryptor;
  #encoder: CKKSEncoder;

  /** `keygen`: fresh (`seal.KeyGenerator(context)`) or from a stored secret key. */
  constructor(
    private readonly seal: Seal,
    private readonly context: Context,
    keygen: KeyGenerator,
    readonly scale: number,
  ) {
    this.#keygen = keygen;
    this.#secretKey = keygen.secretKey();
    this.#encoder = seal.CKKSEncoder(context);
    const pk = keygen.createPublicKey();
    this.#encryptor = seal.Encryptor(context, pk, this.#secretKey);
    pk.delete();
    this.#decryptor = seal.Decryptor(context, this.#secretKey);
  }

  /**
   * Public, relinearization and Galois keys as bytes. Relinearization and Galois keys are made
   * in SEAL's seeded form (half the size), and Galois keys only for the steps asked: each key
   * at N=16384 is megabytes. `compress` zstd-compresses the public and relinearization keys
   * too (the Galois keys always are).
   */
  publicKeys(rotationSteps: number[], compress = false): PublicKeyBytes {
    const zstd = this.seal.ComprModeType.zstd;
    const mode = compress ? zstd : undefined;
    const pk = this.#keygen.createPublicKey();
    const publicKey = pk.saveArray(mode);
    pk.delete();
    const rk = this.#keygen.createRelinKeysSerializable();
    const relinKeys = rk.saveArray(mode);
    rk.delete();
    let galoisKeys: Uint8Array | null = null;
    if (rotationSteps.length) {
      const gk = this.#keygen.createGaloisKeysSerializable(Int32Array.from(rotationSteps));
      galoisKeys = gk.saveArray(zstd);
      gk.delete();
    }
    return { publicKey, relinKeys, galoisKeys };
  }

  /** One slot vector, encrypted with the secret key (seeded: half the upload), as bytes. */
  encryptSlots(v: Float64Array, compress = false): Uint8Array {
    const pt = this.#encoder.encode(v, this.scale) as PlainText;
    const ser = this.#encryptor.encryptSymmetricSerializable(pt);
    const bytes = compress ? ser.saveArray(this.seal.ComprModeType.zstd) : ser.saveArray();
    ser.delete();
    pt.delete();
    return bytes;
  }

  /** A ciphertext's bytes -> its slots; SEAL's own error when they do not load with this context. */
  decryptSlots(bytes: Uint8Array): Float64Array {
    const ct = this.seal.CipherText();
    try {
      ct.loadArray(this.context, bytes);
      const pt = this.seal.PlainText();
      this.#decryptor.decrypt(ct, pt);
      const v = Float64Array.from(this.#encoder.decode(pt));
      pt.delete();
      return v;
    } finally {
      ct.delete();
    }
  }

  /** The secret key's bytes, for the owner's own 0600 keys folder only. */
  saveSecretKey(): Uint8Array {
    return this.#secretKey.saveArray();
  }

  delete(): void {
    this.#encryptor.delete();
    this.#decryptor.delete();
    this.#encoder.delete();
    this.#secretKey.delete();
    this.#keygen.delete();
  }
}
