import { mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../util/atomic-file.js';

/**
 * Refresh sessions on the server's disk, one small JSON file per session id in a sessions/
 * folder beside the keys, so a restart (or a kill -9) does not lose a request half through its
 * client refresh rounds. A session needs no ciphertext (between rounds every tensor the rest
 * needs is with the client): key id, samples, the next round, ciphertexts per tensor, time so
 * far, expiry. Each file is written atomically after a round's answer is ready, so a server
 * killed mid-round reloads the session as it was before that round and the client can send
 * the same round again.
 */

export interface SavedSession {
  key_id: string;
  /** passes (one sample each but for multi-sample packings) */
  samples: number;
  /** samples the request asked for (a batch pass carries several); absent: one per pass */
  count?: number;
  /** the segment the next continue runs */
  next: number;
  counts: number[];
  ms: number[];
  /** counts and times before the last answered round (evaluation.ts sends it again on request) */
  prev?: { counts: number[]; ms: number[] };
  expires_at: number;
}

const FILE = /^([0-9a-f]{32})\.json$/;

export class SessionFiles {
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  save(id: string, s: SavedSession): void {
    writeFileAtomic(join(this.dir, `${id}.json`), JSON.stringify(s));
  }

  remove(id: string): void {
    rmSync(join(this.dir, `${id}.json`), { force: true });
  }

  /** Every stored session still alive at `now`; expired, unreadable and leftover temp files are removed. */
  load(now = Date.now()): Map<string, SavedSession> {
    const live = new Map<string, SavedSession>();
    for (const name of readdirSync(this.dir)) {
      const m = FILE.exec(name);
      const path = join(this.dir, name);
      const s = m ? readSession(path) : null;
      if (m && s && s.expires_at > now) live.set(m[1], s);
      else rmSync(path, { force: true });
    }
    return live;
  }
}

function readSession(path: string): SavedSession | null {
  try {
    const s = JSON.parse(readFileSync(path, 'utf8')) as SavedSession;
    const ok = typeof s.key_id === 'string' && Number.isInteger(s.samples) && Number.isInteger(s.next) && Array.isArray(s.counts) && Array.isArray(s.ms) && typeof s.expires_at === 'number';
    return ok ? s : null;
  } catch {
    return null; // a file this hepoly did not write whole: the session is lost, the client starts again
  }
}
