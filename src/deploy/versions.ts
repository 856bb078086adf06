import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { packageRoot } from '../util/paths.js';
import { ARTIFACT_FORMAT_VERSION, type Versions } from './artifact-format.js';

/**
 * The versions an artifact records: a client and a server built from different hepoly,
 * node-seal or SEAL versions may not read each other's ciphertexts, and saying so beats an
 * obscure deserialization failure.
 */
export function currentVersions(): Versions {
  const hepoly = (JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
  const require = createRequire(import.meta.url);
  const sealDir = dirname(require.resolve('node-seal/package.json'));
  const nodeSeal = (JSON.parse(readFileSync(join(sealDir, 'package.json'), 'utf8')) as { version: string }).version;
  return { hepoly, node_seal: nodeSeal, seal: bundledSealVersion(sealDir), artifact_format: ARTIFACT_FORMAT_VERSION };
}

/** node-seal does not export SEAL's version; its README states the one it bundles. */
function bundledSealVersion(sealDir: string): string {
  try {
    const m = /Microsoft SEAL (\d+\.\d+\.\d+)/.exec(readFileSync(join(sealDir, 'README.md'), 'utf8'));
    return m ? m[1] : 'unknown';
  } catch {
    return 'unknown';
  }
}
