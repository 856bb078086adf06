import { chmodSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeFrames, encodeFrames, jsonPart, parseJsonPart } from '../deploy/framing.js';
import { writeFileAtomic } from '../util/atomic-file.js';
import { HepolyError } from '../util/errors.js';

/**
 * The client's record of a `--run-id` run, on the client's disk (never in Redis): each
 * collected shard's decrypted output slot vectors, written as the shard arrives. A re-run with
 * the same id reads them back instead of recomputing the shard. No key is stored: a resumed
 * run makes fresh keys, and only the shards it has not collected are encrypted again.
 * The folder is 0700: decrypted outputs are the data owner's.
 */

export interface SavedShard {
  /** per sample, per output ciphertext: the decrypted slot vector */
  vectors: Float64Array[][];
  worker: string;
}

export class RunState {
  private constructor(
    readonly dir: string | null,
    private readonly settings: string,
  ) {}

  /** `dir` null: an unnamed run, kept in memory only. */
  static open(dir: string | null, settings: string, runId: string): RunState {
    if (dir) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chmodSync(dir, 0o700);
      const file = join(dir, 'run.json');
      if (existsSync(file)) {
        const saved = (JSON.parse(readFileSync(file, 'utf8')) as { settings: string }).settings;
        if (saved !== settings) {
          throw new HepolyError(
            `--run-id ${runId}: ${file} was started with other settings (checkpoint, parameters, packing or --shard-size); use the same settings to resume, or another --run-id`,
          );
        }
      } else writeFileAtomic(file, JSON.stringify({ settings }));
    }
    return new RunState(dir, settings);
  }

  load(shard: number, samples: number): SavedShard | null {
    if (!this.dir) return null;
    const file = join(this.dir, `shard-${shard}.bin`);
    if (!existsSync(file)) return null;
    const [head, ...parts] = decodeFrames(new Uint8Array(readFileSync(file)), file);
    const meta = parseJsonPart(head, file) as { counts: number[]; worker: string };
    if (meta.counts.length !== samples) return null; // the last shard of a shorter run: recompute
    const vectors: Float64Array[][] = [];
    let at = 0;
    for (const c of meta.counts) {
      vectors.push(parts.slice(at, at + c).map((p) => new Float64Array(Uint8Array.from(p).buffer)));
      at += c;
    }
    return { vectors, worker: meta.worker };
  }

  save(shard: number, s: SavedShard): void {
    if (!this.dir) return;
    const parts = s.vectors.flat().map((v) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength));
    writeFileAtomic(join(this.dir, `shard-${shard}.bin`), encodeFrames([jsonPart({ counts: s.vectors.map((v) => v.length), worker: s.worker }), ...parts]));
  }
}
