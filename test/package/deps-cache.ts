import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The consumer project's dependencies, kept between runs of test/package. A plain
 * `npm install <tarball>` into an empty project extracts ~450 MB (tfjs, node-seal, vega, ...),
 * 30-90 s on a shared 2-core machine. After one install from scratch, its node_modules without
 * hepoly is kept in the system temp folder, keyed by hepoly's dependencies and lockfile, and
 * hard-linked into the next fresh project, where the same plain `npm install <tarball>` then only
 * adds hepoly (about 10 s). HEPOLY_PACKAGE_TEST_FRESH=1 always installs from scratch.
 */

function cacheDir(root: string): string {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as Record<string, unknown>;
  const key = createHash('sha256')
    .update(JSON.stringify([pkg.dependencies, pkg.peerDependencies, pkg.peerDependenciesMeta]))
    .update(readFileSync(join(root, 'package-lock.json')))
    .digest('hex')
    .slice(0, 16);
  return join(tmpdir(), `hepoly-package-test-deps-${key}`);
}

/** npm's record of a tree and hepoly itself: the next install must rebuild both from the tarball */
function dropHepoly(nodeModules: string): void {
  for (const p of ['hepoly', '.bin/hepoly', '.package-lock.json']) rmSync(join(nodeModules, p), { recursive: true, force: true });
}

function linkTree(from: string, to: string): boolean {
  return spawnSync('cp', ['-al', from, to]).status === 0;
}

/** Seeds `consumer/node_modules` from the cache; false (nothing seeded) on a miss or when fresh installs are asked for. */
export function seedDependencies(root: string, consumer: string): boolean {
  const cached = join(cacheDir(root), 'node_modules');
  if (process.env.HEPOLY_PACKAGE_TEST_FRESH === '1' || !existsSync(cached)) return false;
  const target = join(consumer, 'node_modules');
  if (linkTree(cached, target)) return true;
  rmSync(target, { recursive: true, force: true });
  return false;
}

/** After a successful install from scratch: keeps its dependencies for the next run (written whole, then renamed). */
export function keepDependencies(root: string, consumer: string): void {
  const dir = cacheDir(root);
  if (existsSync(dir)) return;
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  if (!linkTree(join(consumer, 'node_modules'), join(tmp, 'node_modules'))) {
    rmSync(tmp, { recursive: true, force: true });
    return;
  }
  dropHepoly(join(tmp, 'node_modules'));
  try {
    renameSync(tmp, dir);
  } catch {
    // another run kept the same tree first
    rmSync(tmp, { recursive: true, force: true });
  }
}
