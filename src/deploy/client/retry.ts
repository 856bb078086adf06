import { HepolyError } from '../../util/errors.js';

/**
 * When RemoteModel sends a request again: a connection that failed (refused, reset, closed
 * mid-answer: the server restarting, or killed) or a 502/503 (a proxy before a restarting
 * server, or a server at its session limit). Never on another status: a 4xx says the request
 * is wrong and sending it again would not change that, and a 500/504 is a worker that died or
 * timed out on this very request. The waits double from `baseMs` up to `maxMs`, each drawn
 * between 3/4 and 5/4 of that so clients cut off together do not come back together. No
 * node: import: this runs in browsers too.
 */

export interface RetryPolicy {
  /** attempts in all, the first included (1: never send again) */
  tries: number;
  /** the wait after the first failed attempt; each next one doubles it */
  baseMs: number;
  /** no wait longer than this */
  maxMs: number;
}

/** 200 ms doubling to 5 s, 8 attempts: about 16 s of waiting, a restarted `hepoly serve` on a loaded host included. */
export const DEFAULT_RETRY: RetryPolicy = { tries: 8, baseMs: 200, maxMs: 5000 };

/** The policy of `RemoteOptions.retry`: `false` sends every request once; fields left out take the defaults. */
export function retryPolicy(opt: Partial<RetryPolicy> | false | undefined): RetryPolicy {
  if (opt === false) return { ...DEFAULT_RETRY, tries: 1 };
  const p = { ...DEFAULT_RETRY, ...opt };
  if (!Number.isInteger(p.tries) || p.tries < 1) throw new HepolyError(`RemoteModel option retry.tries ${p.tries}: expected an integer of at least 1 (attempts in all; 1 or retry: false never sends a request again)`);
  for (const k of ['baseMs', 'maxMs'] as const) {
    if (!Number.isFinite(p[k]) || p[k] < 0) throw new HepolyError(`RemoteModel option retry.${k} ${p[k]}: expected milliseconds, 0 or more`);
  }
  return p;
}

/** The wait after failed attempt `attempt` (1 = the first). */
export function backoffMs(p: RetryPolicy, attempt: number, random = Math.random): number {
  const nominal = Math.min(p.maxMs, p.baseMs * 2 ** (attempt - 1));
  return nominal * (0.75 + 0.5 * random());
}

/** Statuses answered by something between the client and a working server: worth sending again. */
export function retryableStatus(status: number): boolean {
  return status === 502 || status === 503;
}

/**
 * What a rejected fetch says, short: Node's undici wraps the socket's error ('fetch failed',
 * cause ECONNREFUSED / ECONNRESET / UND_ERR_SOCKET 'other side closed'); browsers say only
 * 'Failed to fetch'. An abort (the caller's own AbortSignal) is not a connection error.
 */
export function connectionFailure(e: unknown): { cause: string; abort: boolean } {
  const err = e as { name?: string; message?: string; code?: string; cause?: { code?: string; message?: string } } | null;
  if (err?.name === 'AbortError') return { cause: 'aborted', abort: true };
  const code = err?.cause?.code ?? err?.code;
  const detail = err?.cause?.message && err.cause.message !== code ? err.cause.message : '';
  const cause = [err?.message ?? String(e), code, detail].filter(Boolean).join(': ');
  return { cause, abort: false };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
