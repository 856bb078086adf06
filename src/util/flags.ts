import { availableParallelism } from 'node:os';
import { HepolyError } from './errors.js';

/**
 * Option values (from the command line or the library) that types alone cannot check; every refusal is a usage error
 * (exit 2) that names the flag and the accepted range.
 */
export function integerFlag(flag: string, v: unknown, range: { min: number; max: number }): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < range.min || n > range.max) {
    const found = v === '' || v === undefined ? 'no value' : JSON.stringify(v);
    throw new HepolyError(`${flag}: expected an integer from ${range.min} to ${range.max}, found ${found}`, { exitCode: 2 });
  }
  return n;
}

/** Worker threads: each holds its own SEAL heap, so more than the cores only adds memory. */
export function workersFlag(v: number | undefined): number | undefined {
  if (v === undefined) return undefined;
  return integerFlag('--workers', v, { min: 1, max: availableParallelism() });
}
