import { randomBytes } from 'node:crypto';

/**
 * Randomness that other parties cannot predict (the recipe seed is shared, so the seeded
 * generators of src/util/rng.ts are not fit for DP sampling or noise). Uniforms come from the
 * OS CSPRNG; normals by Box-Muller. Floating-point Gaussian samples are not a perfect DP
 * primitive (Mironov 2012, least significant bits); docs/federated.md names this limit.
 */
export class SecureRandom {
  private buf = Buffer.alloc(0);
  private off = 0;

  uniform(): number {
    if (this.off + 8 > this.buf.length) {
      this.buf = randomBytes(8192);
      this.off = 0;
    }
    // 53 random bits -> [0, 1)
    const hi = this.buf.readUInt32LE(this.off) >>> 5;
    const lo = this.buf.readUInt32LE(this.off + 4) >>> 6;
    this.off += 8;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  normal(): number {
    let u = 0;
    while (u === 0) u = this.uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.uniform());
  }
}
