import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { recoverDir, writeDirAtomic } from '../../util/atomic-dir.js';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { HttpError } from './http-util.js';

/**
 * Clients' evaluation keys on the server's disk, one folder per key id (the sha256 of the
 * uploaded bytes): keys.bin as uploaded and meta.json (written last: the folder is complete
 * when it is there). Each folder is written atomically, so a kill -9 leaves a key either
 * stored whole or not at all, and a restarted server finds every key it had acknowledged.
 * A key id is checked to be 64 hex digits before it becomes a path: no request reaches a
 * file outside this folder.
 */

export interface KeyMeta {
  key_id: string;
  server_digest: string;
  created_at: string;
  expires_at: string;
  bytes: number;
}

const ID = /^[0-9a-f]{64}$/;
const isComplete = (d: string) => existsSync(join(d, 'meta.json'));

export class KeyStore {
  /** the most recently used keys, so a request does not read megabytes from disk */
  private cache = new Map<string, { bytes: Uint8Array; meta: KeyMeta }>();

  constructor(
    readonly dir: string,
    readonly ttlMs: number,
    private readonly cacheSize = 4,
  ) {
    mkdirSync(dir, { recursive: true });
    // an upload interrupted by a kill: keep the complete copy, drop the rest
    for (const name of readdirSync(dir)) {
      const m = /^([0-9a-f]{64})\.(tmp|prev)-\d+$/.exec(name);
      if (m) recoverDir(join(dir, m[1]), isComplete);
      // an upload still streaming when the server was killed
      if (/^upload-[0-9a-f]+\.part$/.test(name)) rmSync(join(dir, name), { force: true });
    }
  }

  /** Where a key upload streams to before it is checked (a name no key id can take). */
  uploadFile(): string {
    return join(this.dir, `upload-${randomBytes(8).toString('hex')}.part`);
  }

  /**
   * A checked upload (streamUpload's file, its sha256 the key id) moved into its folder:
   * keys.bin renamed in, meta.json written last, the folder renamed into place. Keys already
   * stored under the id are the same bytes: only their expiry is renewed.
   */
  putFile(id: string, file: string, bytes: number, serverDigest: string, now = Date.now()): KeyMeta {
    KeyStore.checkId(id);
    const meta = this.newMeta(id, bytes, serverDigest, now);
    const dir = join(this.dir, id);
    this.cache.delete(id);
    if (isComplete(dir)) {
      rmSync(file, { force: true });
      writeFileAtomic(join(dir, 'meta.json'), JSON.stringify(meta));
      return meta;
    }
    recoverDir(dir, isComplete);
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    try {
      renameSync(file, join(tmp, 'keys.bin'));
      writeFileAtomic(join(tmp, 'meta.json'), JSON.stringify(meta));
      rmSync(dir, { recursive: true, force: true }); // incomplete leftovers only (checked above)
      renameSync(tmp, dir);
      const fd = openSync(this.dir, 'r');
      fsyncSync(fd);
      closeSync(fd);
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true });
      rmSync(file, { force: true });
      throw e;
    }
    return meta;
  }

  private newMeta(id: string, bytes: number, serverDigest: string, now: number): KeyMeta {
    return {
      key_id: id,
      server_digest: serverDigest,
      created_at: new Date(now).toISOString(),
      expires_at: new Date(now + this.ttlMs).toISOString(),
      bytes,
    };
  }

  static checkId(id: string): string {
    if (!ID.test(id)) throw new HttpError(400, `key id ${JSON.stringify(id.slice(0, 80))}: expected 64 hex digits (the sha256 the server answered to POST /v1/keys)`);
    return id;
  }

  put(id: string, bytes: Uint8Array, serverDigest: string, now = Date.now()): KeyMeta {
    KeyStore.checkId(id);
    const meta = this.newMeta(id, bytes.length, serverDigest, now);
    writeDirAtomic(join(this.dir, id), [['keys.bin', bytes], ['meta.json', JSON.stringify(meta)]], isComplete);
    this.remember(id, bytes, meta);
    return meta;
  }

  /** The keys and their meta; 404 unknown, 410 expired (and removed). */
  get(id: string, now = Date.now()): { bytes: Uint8Array; meta: KeyMeta } {
    KeyStore.checkId(id);
    let entry = this.cache.get(id);
    if (!entry) {
      const dir = join(this.dir, id);
      if (!isComplete(dir)) throw new HttpError(404, `key id ${id.slice(0, 12)}...: unknown on this server. Upload the evaluation keys with POST /v1/keys`);
      const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as KeyMeta;
      entry = { bytes: new Uint8Array(readFileSync(join(dir, 'keys.bin'))), meta };
    }
    if (Date.parse(entry.meta.expires_at) <= now) {
      this.delete(id);
      throw new HttpError(410, `key id ${id.slice(0, 12)}...: expired at ${entry.meta.expires_at}. Upload the evaluation keys again with POST /v1/keys`);
    }
    this.remember(id, entry.bytes, entry.meta);
    return entry;
  }

  meta(id: string, now = Date.now()): KeyMeta {
    return this.get(id, now).meta;
  }

  delete(id: string): boolean {
    KeyStore.checkId(id);
    this.cache.delete(id);
    const dir = join(this.dir, id);
    if (!existsSync(dir)) return false;
    rmSync(dir, { recursive: true, force: true });
    return true;
  }

  count(): number {
    return readdirSync(this.dir).filter((n) => ID.test(n)).length;
  }

  private remember(id: string, bytes: Uint8Array, meta: KeyMeta): void {
    this.cache.delete(id);
    this.cache.set(id, { bytes, meta });
    while (this.cache.size > this.cacheSize) this.cache.delete(this.cache.keys().next().value!);
  }
}
