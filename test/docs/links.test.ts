import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hepoly } from '../helpers/cli.js';

/**
 * The README and docs/ are what a newcomer follows, so they are checked like code: every
 * relative link resolves (file and #heading), the README keeps the two set-up commands and
 * lists every command the CLI has, and nothing in the repository points outside it.
 */
const root = fileURLToPath(new URL('../../', import.meta.url));
const docs = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
const read = (file: string) => readFileSync(join(root, file), 'utf8');
const withoutCode = (md: string) => md.replace(/```[\s\S]*?```/g, '');

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchors(md: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const [, heading] of withoutCode(md).matchAll(/^#{1,6} (.+)$/gm)) {
    const base = heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\- _]/gu, '').replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

describe('docs: README and docs/ are followable', () => {
  for (const file of docs) {
    it(`${file}: every relative link names an existing file and heading`, () => {
      const broken: string[] = [];
      for (const [, target] of withoutCode(read(file)).matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^[a-z]+:/.test(target)) continue; // https:, mailto:
        const [path, anchor] = target.split('#');
        const resolved = path ? normalize(join(dirname(file), path)) : file;
        if (!existsSync(join(root, resolved))) broken.push(`${target} (no file ${resolved})`);
        else if (anchor && resolved.endsWith('.md') && !anchors(read(resolved)).has(anchor)) broken.push(`${target} (no heading #${anchor} in ${resolved})`);
      }
      expect(broken, `${file}: broken links`).to.deep.equal([]);
    });
  }

  it('README keeps the two set-up commands verbatim', () => {
    const readme = read('README.md');
    expect(readme).to.include('npm install && npx hepoly train recipes/quickstart.yaml');
    expect(readme).to.include('npm install && npm test');
  });

  it("README's commands table lists every command of hepoly --help", () => {
    const help = hepoly(['--help']);
    expect(help.code, help.stderr).to.equal(0);
    const commands = [...help.stdout.matchAll(/^ {2}hepoly ([a-z][a-z-]*)/gm)].map((m) => m[1]);
    expect(commands.length, 'commands parsed from --help').to.be.greaterThan(10);
    const table = read('README.md').split('\n').filter((l) => l.startsWith('| `hepoly '));
    const missing = commands.filter((c) => !table.some((row) => row.startsWith(`| \`hepoly ${c} `) || row.startsWith(`| \`hepoly ${c}\``)));
    expect(missing, 'commands without a README row').to.deep.equal([]);
  });

  it('no source, doc or script file refers to a path outside the repository', () => {
    // the repository's files: tracked, or new and not ignored (so build outputs and data are left out)
    const ls = spawnSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' });
    expect(ls.status, `git ls-files failed (this check needs git and the repository's .git): ${ls.stderr}`).to.equal(0);
    const files = ls.stdout.split('\n').filter((f) => /\.(ts|md|py|mjs|js|json|yaml)$/.test(f) && existsSync(join(root, f)));
    expect(files.length, 'files listed').to.be.greaterThan(100);
    // built by concatenation so this file does not match itself
    const outside = new RegExp(['\\.\\./', 'shared/', '|/work/', 'shared'].join(''));
    expect(files.filter((f) => outside.test(read(f)))).to.deep.equal([]);
  });
});
