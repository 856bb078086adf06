import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ZodType } from 'zod';
import type { HeProgram } from '../he/program.js';
import { HepolyError } from '../util/errors.js';
import {
  type ClientArtifact,
  type ServerManifest,
  ARTIFACT_FORMAT_VERSION,
  CLIENT_FORMAT,
  ClientArtifactSchema,
  SERVER_FORMAT,
  ServerManifestSchema,
  digestInput,
} from './artifact-format.js';
import { decodeProgram } from './program-codec.js';

/** Reading exported artifacts from disk (Node side: the server, the CLI client). */

function formatOf(file: string): unknown {
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { format?: unknown }).format;
  } catch {
    return undefined;
  }
}

/** A complete server artifact: its manifest (written last) is there and says so. */
export function isServerArtifactDir(dir: string): boolean {
  return formatOf(join(dir, 'manifest.json')) === SERVER_FORMAT;
}

export function isClientArtifactDir(dir: string): boolean {
  return formatOf(join(dir, 'client.json')) === CLIENT_FORMAT;
}

function readJson<T>(file: string, schema: ZodType<T>, what: string, fix: string): T {
  if (!existsSync(file)) throw new HepolyError(`${file}: not found: is this a ${what}? ${fix}`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new HepolyError(`${file}: not valid JSON (${(e as Error).message}). ${fix}`);
  }
  const fmt = (raw as { versions?: { artifact_format?: unknown } })?.versions?.artifact_format;
  if (typeof fmt === 'number' && fmt !== ARTIFACT_FORMAT_VERSION) {
    throw new HepolyError(`${file}: versions.artifact_format: this hepoly reads format ${ARTIFACT_FORMAT_VERSION}, the artifact is format ${fmt}. ${fix}`);
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new HepolyError(`${file}: ${issue.path.join('.') || '(top level)'}: ${issue.message}. ${fix}`);
  }
  return r.data;
}

const REEXPORT = 'Export it again with `hepoly export CHECKPOINT --out DIR`';

export interface ServerArtifact {
  dir: string;
  manifest: ServerManifest;
  program: HeProgram;
}

/** The server artifact, its files checked against the manifest and the manifest against its digest. */
export function loadServerArtifact(dir: string): ServerArtifact {
  const manifestFile = join(dir, 'manifest.json');
  const manifest = readJson(manifestFile, ServerManifestSchema, 'server artifact (DIR/server of hepoly export)', REEXPORT);
  const digest = createHash('sha256').update(digestInput(manifest)).digest('hex');
  if (digest !== manifest.digest) throw new HepolyError(`${manifestFile}: digest: the manifest was changed after export (sha256 ${digest.slice(0, 12)}, recorded ${manifest.digest.slice(0, 12)}). ${REEXPORT}`);
  const files: Record<string, Uint8Array> = {};
  for (const [name, sha] of Object.entries(manifest.files)) {
    const path = join(dir, name);
    if (!existsSync(path)) throw new HepolyError(`${path}: missing from the server artifact. ${REEXPORT}`);
    const bytes = readFileSync(path);
    if (createHash('sha256').update(bytes).digest('hex') !== sha) throw new HepolyError(`${path}: its sha256 differs from manifest.json's files.${name} (the file was changed or truncated). ${REEXPORT}`);
    files[name] = bytes;
  }
  const program = decodeProgram(Buffer.from(files['program.json']).toString('utf8'), files['program.bin'], dir);
  return { dir, manifest, program };
}

export function loadClientArtifact(dir: string): ClientArtifact {
  return readJson(join(dir, 'client.json'), ClientArtifactSchema, 'client artifact (DIR/client of hepoly export)', REEXPORT);
}
