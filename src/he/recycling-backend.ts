import type { CkksBackend } from './backend.js';
import type { PublicBundle } from './client.js';
import { deleteEvaluationKeys, loadEvaluationKeys } from './keys.js';
import { CkksContext, type CipherText, type PlainText, newSeal } from './seal.js';
import { type EvaluationKeys, SealBackend } from './seal-backend.js';

/**
 * A server-side SEAL backend whose WebAssembly heap can be thrown away between steps.
 *
 * SEAL keeps freed memory in per-size pools inside a wasm heap that never shrinks, so an
 * evaluator that walks ciphertexts down a chain (every level is a different size) ends up
 * holding the peak of every level at once. The batch server replaces grown worker threads
 * between stages; an evaluator that runs in one thread (the transformer interpreter) calls
 * `recycle()` between nodes instead: the live ciphertexts are serialized, a fresh SEAL
 * instance is loaded with the same public keys, and they are loaded back. The old instance
 * is dropped whole, and with it its heap.
 *
 * Ciphertexts are handed out as handles that stay valid across a recycle. Plaintexts are
 * not: none may be alive when `recycle()` runs (the evaluator encodes and frees them within
 * a node).
 */
export interface CtHandle {
  ct: CipherText;
}

interface Instance {
  ctx: CkksContext;
  keys: EvaluationKeys;
  be: SealBackend;
}

async function instanceFor(bundle: PublicBundle): Promise<Instance> {
  // a new module instance, not the thread's shared one: its heap is this backend's alone
  const seal = await newSeal();
  const ctx = CkksContext.create(seal, bundle.params);
  const keys = loadEvaluationKeys(ctx, bundle);
  return { ctx, keys, be: new SealBackend(ctx, keys) };
}

function deleteInstance(i: Instance): void {
  i.be.delete();
  deleteEvaluationKeys(i.keys);
  i.ctx.delete();
}

export class RecyclingSealBackend implements CkksBackend<CtHandle, PlainText> {
  readonly slots: number;
  readonly topLevel: number;
  readonly scale: number;
  /** how many times the heap was replaced */
  recycles = 0;
  /** time spent replacing it */
  recycleMs = 0;
  private readonly live = new Set<CtHandle>();
  private livePlains = 0;
  /** bytes of ciphertexts made since the last recycle: a bound on what SEAL's pools can hold */
  private madeBytes = 0;
  private readonly bytesPerLevel: number;

  private constructor(
    private readonly bundle: PublicBundle,
    private inst: Instance,
  ) {
    this.slots = inst.be.slots;
    this.topLevel = inst.be.topLevel;
    this.scale = inst.be.scale;
    // two polynomials of N coefficients per prime, 8 bytes each (products briefly hold three)
    this.bytesPerLevel = 2 * bundle.params.polyModulusDegree * 8;
  }

  /** The evaluator's backend from the client's public bytes only: it never sees the secret key. */
  static async create(bundle: PublicBundle): Promise<RecyclingSealBackend> {
    return new RecyclingSealBackend(bundle, await instanceFor(bundle));
  }

  /** ciphertexts alive in the current heap */
  get liveCiphertexts(): number {
    return this.live.size;
  }

  /** `recycle()` once the ciphertexts made since the last one add up to `budgetBytes`. */
  async recycleIfGrown(budgetBytes = 2 ** 30): Promise<boolean> {
    if (this.madeBytes < budgetBytes) return false;
    await this.recycle();
    return true;
  }

  /** Moves every live ciphertext into a fresh SEAL instance and drops the old one. */
  async recycle(): Promise<void> {
    if (this.livePlains) throw new Error(`internal: ${this.livePlains} plaintexts alive across a heap recycle`);
    const t0 = performance.now();
    const handles = [...this.live];
    const bytes = handles.map((h) => this.inst.be.serialize(h.ct));
    deleteInstance(this.inst);
    this.inst = await instanceFor(this.bundle);
    handles.forEach((h, i) => (h.ct = this.inst.be.deserialize(bytes[i])));
    this.recycles++;
    this.madeBytes = 0;
    this.recycleMs += performance.now() - t0;
  }

  delete(): void {
    for (const h of this.live) h.ct.delete();
    this.live.clear();
    deleteInstance(this.inst);
  }

  private wrap(ct: CipherText): CtHandle {
    this.madeBytes += this.bytesPerLevel * ct.coeffModulusSize;
    const h = { ct };
    this.live.add(h);
    return h;
  }

  private plain(p: PlainText): PlainText {
    this.livePlains++;
    return p;
  }

  prime(level: number): number {
    return this.inst.be.prime(level);
  }
  levelOf(c: CtHandle): number {
    return this.inst.be.levelOf(c.ct);
  }
  scaleOf(c: CtHandle): number {
    return this.inst.be.scaleOf(c.ct);
  }
  setScale(c: CtHandle, scale: number): void {
    this.inst.be.setScale(c.ct, scale);
  }
  free(c: CtHandle): void {
    if (!this.live.delete(c)) throw new Error('internal: ciphertext freed twice');
    c.ct.delete();
  }
  clone(c: CtHandle): CtHandle {
    return this.wrap(this.inst.be.clone(c.ct));
  }
  add(a: CtHandle, b: CtHandle): CtHandle {
    return this.wrap(this.inst.be.add(a.ct, b.ct));
  }
  addInPlace(acc: CtHandle, b: CtHandle): void {
    this.inst.be.addInPlace(acc.ct, b.ct);
  }
  subInPlace(acc: CtHandle, b: CtHandle): void {
    this.inst.be.subInPlace(acc.ct, b.ct);
  }
  negateInPlace(c: CtHandle): void {
    this.inst.be.negateInPlace(c.ct);
  }
  mulConst(c: CtHandle, value: number, ptScale: number): CtHandle {
    return this.wrap(this.inst.be.mulConst(c.ct, value, ptScale));
  }
  mulConstAddInPlace(acc: CtHandle, c: CtHandle, value: number, ptScale: number): void {
    this.inst.be.mulConstAddInPlace(acc.ct, c.ct, value, ptScale);
  }
  addConstInPlace(c: CtHandle, value: number): void {
    this.inst.be.addConstInPlace(c.ct, value);
  }
  encode(values: Float64Array, scale: number, level: number): PlainText {
    return this.plain(this.inst.be.encode(values, scale, level));
  }
  encodeConst(value: number, scale: number, level: number): PlainText {
    return this.plain(this.inst.be.encodeConst(value, scale, level));
  }
  freePlain(p: PlainText): void {
    this.livePlains--;
    this.inst.be.freePlain(p);
  }
  mulPlain(c: CtHandle, p: PlainText): CtHandle {
    return this.wrap(this.inst.be.mulPlain(c.ct, p));
  }
  mulPlainAddInPlace(acc: CtHandle, c: CtHandle, p: PlainText): void {
    this.inst.be.mulPlainAddInPlace(acc.ct, c.ct, p);
  }
  addPlainInPlace(c: CtHandle, p: PlainText): void {
    this.inst.be.addPlainInPlace(c.ct, p);
  }
  addVecInPlace(c: CtHandle, values: Float64Array): void {
    this.inst.be.addVecInPlace(c.ct, values);
  }
  multiply(a: CtHandle, b: CtHandle): CtHandle {
    return this.wrap(this.inst.be.multiply(a.ct, b.ct));
  }
  multiplyNoRelin(a: CtHandle, b: CtHandle): CtHandle {
    return this.wrap(this.inst.be.multiplyNoRelin(a.ct, b.ct));
  }
  relinearizeInPlace(c: CtHandle): void {
    this.inst.be.relinearizeInPlace(c.ct);
  }
  square(c: CtHandle): CtHandle {
    return this.wrap(this.inst.be.square(c.ct));
  }
  rescaleInPlace(c: CtHandle): void {
    this.inst.be.rescaleInPlace(c.ct);
  }
  modSwitchInPlace(c: CtHandle, level: number): void {
    this.inst.be.modSwitchInPlace(c.ct, level);
  }
  rotate(c: CtHandle, steps: number): CtHandle {
    return this.wrap(this.inst.be.rotate(c.ct, steps));
  }
  encryptVec(values: Float64Array, scale: number, level: number): CtHandle {
    return this.wrap(this.inst.be.encryptVec(values, scale, level));
  }
  serialize(c: CtHandle): Uint8Array {
    return this.inst.be.serialize(c.ct);
  }
  deserialize(bytes: Uint8Array): CtHandle {
    return this.wrap(this.inst.be.deserialize(bytes));
  }
}
