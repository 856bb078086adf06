/**
 * Positive controls of the key-separation test: places a secret would hide on a server that a
 * property walk cannot see. The heap walk must find a value in each of them.
 */

/** A value in a true private field. */
export class HoldsInPrivateField {
  #held: unknown;
  constructor(held: unknown) {
    this.#held = held;
  }
  get size(): number {
    return this.#held ? 1 : 0;
  }
}

/** A value only a closure holds. */
export function closureHolding(held: unknown): { size: () => number } {
  return { size: () => (held ? 1 : 0) };
}

let moduleHeld: unknown = null;

/** A value in a module variable, reached through a function of the module. */
export function holdInModule(held: unknown): { size: () => number } {
  moduleHeld = held;
  return { size: moduleSize };
}

function moduleSize(): number {
  return moduleHeld ? 1 : 0;
}

export function releaseModuleHeld(): void {
  moduleHeld = null;
}
