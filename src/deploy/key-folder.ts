import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { HepolyError } from '../util/errors.js';
import type { ClientArtifact } from './artifact-format.js';
import { HEClient } from './client/he-client.js';

/**
 * The client's own keys folder (`hepoly predict --keys DIR`): the secret key and the exact
 * evaluation-key bytes the server stores, so the next run reuses the key id instead of
 * uploading megabytes again. Folder 0700, files 0600 from the moment they exist (written in a
 * 0700 temp folder that is renamed into place: a crash leaves the old folder or the new one).
 * This is Node only; a browser keeps its keys however the page chooses (HEClient.exportKeys).
 */

interface KeyInfo {
  key_id: string;
  poly_modulus_degree: number;
  coeff_modulus_bits: number[];
  rotation_steps: number[];
}

const FILES = { info: 'key.json', secret: 'secret.key', evaluation: 'evaluation-keys.bin' };

export async function openClientKeys(dir: string, artifact: ClientArtifact): Promise<{ client: HEClient; created: boolean }> {
  const infoFile = join(dir, FILES.info);
  if (existsSync(infoFile)) {
    const info = JSON.parse(readFileSync(infoFile, 'utf8')) as KeyInfo;
    const p = artifact.params;
    const same =
      info.poly_modulus_degree === p.polyModulusDegree &&
      info.coeff_modulus_bits.join() === p.coeffModulusBits.join() &&
      artifact.rotation_steps.every((s) => info.rotation_steps.includes(s));
    if (!same) {
      throw new HepolyError(
        `--keys ${dir}: these keys were made for other CKKS parameters or rotations (N=${info.poly_modulus_degree}, ${info.rotation_steps.length} rotation steps) than this client artifact needs (N=${p.polyModulusDegree}, ${artifact.rotation_steps.length}). Use another --keys folder, or delete this one to make new keys`,
      );
    }
    refuseReadableByOthers(join(dir, FILES.secret));
    const client = await HEClient.create(artifact, {
      secretKey: new Uint8Array(readFileSync(join(dir, FILES.secret))),
      evaluationKeys: new Uint8Array(readFileSync(join(dir, FILES.evaluation))),
    });
    if (client.keyId !== info.key_id) {
      client.delete();
      throw new HepolyError(`--keys ${dir}: ${FILES.evaluation} does not hash to the key id in ${FILES.info} (the folder was changed). Delete it to make new keys`);
    }
    return { client, created: false };
  }
  if (existsSync(dir) && statSync(dir).isDirectory() && !isEmptyDir(dir)) {
    throw new HepolyError(`--keys ${dir}: exists and is not a hepoly keys folder (no ${FILES.info}); hepoly never writes into it. Use another --keys folder`);
  }
  const client = await HEClient.create(artifact);
  const k = client.exportKeys();
  const info: KeyInfo = {
    key_id: client.keyId,
    poly_modulus_degree: artifact.params.polyModulusDegree,
    coeff_modulus_bits: artifact.params.coeffModulusBits,
    rotation_steps: artifact.rotation_steps,
  };
  writePrivateDir(dir, [
    [FILES.secret, k.secretKey],
    [FILES.evaluation, k.evaluationKeys],
    [FILES.info, new TextEncoder().encode(JSON.stringify(info, null, 1))],
  ]);
  return { client, created: true };
}

function isEmptyDir(dir: string): boolean {
  return readdirSync(dir).length === 0;
}

/** A secret key file that others may read is a leak already: say so rather than use it. */
function refuseReadableByOthers(file: string): void {
  const mode = statSync(file).mode & 0o777;
  if (mode & 0o077) throw new HepolyError(`${file}: mode ${mode.toString(8)}: a secret key must be readable by its owner only. Run \`chmod 600 ${file}\``);
}

function writePrivateDir(dir: string, files: [string, Uint8Array][]): void {
  mkdirSync(dirname(dir), { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { mode: 0o700 });
  try {
    for (const [name, bytes] of files) {
      const fd = openSync(join(tmp, name), 'w', 0o600);
      try {
        let off = 0;
        while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    }
    if (existsSync(dir)) rmSync(dir, { recursive: true }); // empty (checked by the caller)
    renameSync(tmp, dir);
    chmodSync(dir, 0o700);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
