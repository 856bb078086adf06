import type { HeProgram } from './program.js';
import { programForward } from './reference.js';
import type { RefreshedPart } from './refresh.js';
import { HepolyError } from '../util/errors.js';
import type { TokenFold } from './packing/token-fold.js';

/**
 * he-validate's look at a batch pass from the client's side of each refresh. The client
 * decrypts there anyway, so it compares what it decrypted with the plaintext program on the
 * same samples and logs the error. A run whose ciphertexts have left the plaintext values
 * (an error as large as the values) stops at that refresh, naming the tensor: the segments
 * after it, often most of an hour on a deep model, could only compute noise.
 */
export interface RefreshCheck {
  /** refresh point, from 1 */
  refresh: number;
  label: string;
  maxAbsError: number;
  maxAbsValue: number;
}

export class RefreshWatch {
  readonly checks: RefreshCheck[] = [];
  private readonly expected: Float64Array[][];

  /**
   * `x` holds the first `count` samples of the pass (batch packing: sample s in slot s; token
   * packing: `fold` says which elements each ciphertext holds, in which token block).
   */
  constructor(
    private readonly p: HeProgram,
    x: Float32Array,
    private readonly count: number,
    per: number,
    private readonly log: (line: string) => void,
    private readonly fold?: TokenFold,
  ) {
    this.expected = Array.from({ length: count }, (_, s) => programForward(p, Float64Array.from(x.subarray(s * per, (s + 1) * per))));
  }

  /** One refreshed part, decrypted: throws when it has diverged from the plaintext program. */
  check(at: RefreshedPart, decrypted: Float64Array[]): void {
    let err = 0;
    let mag = 0;
    const cells = this.cellsOf(at.tensor);
    decrypted.forEach((v, k) => {
      for (const { tensor, element, slot } of cells(at.elements[k])) {
        for (let s = 0; s < this.count; s++) {
          const want = this.expected[s][tensor][element];
          err = Math.max(err, Math.abs(v[slot + s] - want));
          mag = Math.max(mag, Math.abs(want));
        }
      }
    });
    const label = this.p.tensors[this.fold ? this.fold.origin[at.tensor] : at.tensor].label;
    const c = { refresh: at.point + 1, label, maxAbsError: err, maxAbsValue: mag };
    this.checks.push(c);
    const total = this.p.refreshes?.length ?? 0;
    this.log(`  refresh ${c.refresh}/${total} (${label}): max error ${err.toPrecision(2)} against values up to ${mag.toPrecision(3)} (${this.count} samples)`);
    if (!(err <= Math.max(1, mag))) {
      throw new HepolyError(
        `encrypted values left the plaintext program by client refresh ${c.refresh} of ${total} (tensor ${label}): max error ${err.toPrecision(3)} against values up to ${mag.toPrecision(3)}. ` +
          'The run stops here, since every later segment would start from these values. Run the same command with --mode simulate --trace to see whether the schedule (levels, scales) or the encrypted arithmetic is at fault, and try a larger scale with --params.',
      );
    }
  }

  /** The plaintext elements a served ciphertext holds: (tensor, element, first slot of its samples). */
  private cellsOf(served: number): (k: number) => { tensor: number; element: number; slot: number }[] {
    const fold = this.fold;
    if (!fold) return (k) => [{ tensor: served, element: k, slot: 0 }];
    const tensor = fold.origin[served];
    const map = fold.maps[served]!;
    const byFeature: { tensor: number; element: number; slot: number }[][] = Array.from({ length: map.features }, () => []);
    for (let e = 0; e < map.feature.length; e++) byFeature[map.feature[e]].push({ tensor, element: e, slot: map.token[e] * fold.stride });
    return (k) => byFeature[k];
  }
}
