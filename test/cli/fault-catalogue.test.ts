import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

/**
 * The catalogue of bad inputs and faults (docs/faults.md lists it for users): one row per case,
 * with the command, the exit code, a pattern the one-line message must match and what must be
 * on disk afterwards. Every row ends in a message, never a stack trace, and leaves no
 * temporary file behind.
 */
interface Case {
  name: string;
  /** builds the files the case needs; returns the command-line arguments */
  args: (t: string) => string[];
  code: number;
  message: RegExp;
  /** checked after the command: what must (still) be on disk */
  after?: (t: string) => void;
  env?: Record<string, string>;
}

const quick = ['--set', 'train.epochs=1'];
const train = (out: string, ...extra: string[]) => ['train', 'recipes/quickstart.yaml', ...quick, '--out', out, ...extra];

const thesis = (t: string) => {
  mkdirSync(join(t, 'thesis'), { recursive: true });
  writeFileSync(join(t, 'thesis', 'chapter1.tex'), 'my thesis');
  writeFileSync(join(t, 'thesis', 'results.csv'), 'a,b\n1,2\n');
  return join(t, 'thesis');
};
const thesisIntact = (t: string) => {
  expect(readFileSync(join(t, 'thesis', 'chapter1.tex'), 'utf8')).to.equal('my thesis');
  expect(readdirSync(join(t, 'thesis')).sort()).to.deep.equal(['chapter1.tex', 'results.csv']);
};

const CATALOGUE: Case[] = [
  {
    name: 'train --out onto a folder of the user\'s files',
    args: (t) => train(thesis(t)),
    code: 1,
    message: /--out .*thesis: the folder exists and is not a hepoly checkpoint \(it holds .*chapter1\.tex.*\); hepoly never replaces it/,
    after: thesisIntact,
  },
  {
    name: 'train --out onto a regular file',
    args: (t) => (writeFileSync(join(t, 'notes.txt'), 'keep me'), train(join(t, 'notes.txt'))),
    code: 1,
    message: /--out .*notes\.txt: is a file \(7 bytes\), not a hepoly checkpoint/,
    after: (t) => expect(readFileSync(join(t, 'notes.txt'), 'utf8')).to.equal('keep me'),
  },
  {
    name: 'train --out "" (the current folder)',
    args: () => train(''),
    code: 1,
    message: /--out is empty/,
  },
  {
    name: 'train --out . (the current folder)',
    args: () => train('.'),
    code: 1,
    message: /--out \.: is the current folder, a folder above it/,
  },
  {
    name: 'train --out through a symlink to a user folder',
    args: (t) => (symlinkSync(thesis(t), join(t, 'link')), train(join(t, 'link'))),
    code: 1,
    message: /--out .*link: is a symbolic link/,
    after: thesisIntact,
  },
  {
    name: 'train --out onto an existing checkpoint without --overwrite',
    args: (t) => (expect(hepoly(train(join(t, 'ck'))).code).to.equal(0), train(join(t, 'ck'))),
    code: 1,
    message: /--out .*ck: already holds a hepoly checkpoint \(trained 1 of 1 epochs\)\. To replace it pass --overwrite/,
    after: (t) => expect(existsSync(join(t, 'ck', 'model.json'))).to.equal(true),
  },
  {
    name: 'train --out a URL',
    args: () => train('file:///tmp/x'),
    code: 1,
    message: /hepoly writes local paths only/,
  },
  {
    name: 'train --out a name longer than the file system allows',
    args: (t) => train(join(t, 'x'.repeat(3000))),
    code: 1,
    message: /the path is too long.*ENAMETOOLONG/,
  },
  {
    name: 'train --out whose parent is a file',
    args: (t) => (writeFileSync(join(t, 'afile'), ''), train(join(t, 'afile', 'ck'))),
    code: 1,
    message: /a part of the path is a file, not a folder.*ENOTDIR/,
  },
  {
    name: 'train --out held by a live process (lock file with its PID)',
    args: (t) => (writeFileSync(join(t, 'busy.lock'), `${process.pid}\n`), train(join(t, 'busy'))),
    code: 1,
    message: new RegExp(`--out .*busy is in use by PID ${process.pid}`),
    after: (t) => expect(existsSync(join(t, 'busy'))).to.equal(false),
  },
  {
    name: 'a stale lock (its process is gone) is taken over',
    args: (t) => (writeFileSync(join(t, 'stale.lock'), '999999\n'), train(join(t, 'stale'))),
    code: 0,
    message: /^$/,
    after: (t) => {
      expect(existsSync(join(t, 'stale', 'model.json'))).to.equal(true);
      expect(existsSync(join(t, 'stale.lock')), 'the lock is released at the end').to.equal(false);
    },
  },
  {
    name: 'prune --out onto a folder of the user\'s files',
    args: (t) => (expect(hepoly(train(join(t, 'p'))).code).to.equal(0), ['prune', join(t, 'p'), '--sparsity', '0.5', '--out', thesis(t)]),
    code: 1,
    message: /--out .*thesis: the folder exists and is not a hepoly checkpoint/,
    after: thesisIntact,
  },
  {
    name: 'he-validate --report into a missing folder is refused before the encrypted run',
    args: (t) => (expect(hepoly(train(join(t, 'v'))).code).to.equal(0), ['he-validate', join(t, 'v'), '--samples', '2', '--report', join(t, 'no-such', 'r.md')]),
    code: 1,
    message: /--report .*no-such\/r\.md: the folder .* does not exist/,
  },
  {
    name: 'he-validate --report onto a file hepoly did not write',
    args: (t) => {
      expect(hepoly(train(join(t, 'w'))).code).to.equal(0);
      writeFileSync(join(t, 'mine.md'), '# my notes\n');
      return ['he-validate', join(t, 'w'), '--samples', '2', '--report', join(t, 'mine.md')];
    },
    code: 1,
    message: /--report .*mine\.md: exists and was not written by hepoly/,
    after: (t) => expect(readFileSync(join(t, 'mine.md'), 'utf8')).to.equal('# my notes\n'),
  },
];

describe('fault catalogue: every bad input ends in one message, an exit code and nothing lost', function () {
  this.timeout(300000);
  const tmp = tempDir();
  after(() => tmp.cleanup());

  CATALOGUE.forEach((c, i) => {
    it(c.name, () => {
      const t = join(tmp.path, `case-${i}`);
      mkdirSync(t);
      const r = hepoly(c.args(t), { env: c.env });
      expect(r.code, r.stdout + r.stderr).to.equal(c.code);
      const err = r.stderr.trim();
      expect(err).to.not.match(/internal error|    at /);
      if (c.code !== 0) {
        expect(err.split('\n')).to.have.length(1);
        expect(err).to.match(/^error: /);
        expect(err).to.match(c.message);
      }
      c.after?.(t);
      expect(readdirSync(t).filter((f) => /\.(tmp|prev)-|\.hepoly-write-test/.test(f)), 'no temporary files left').to.deep.equal([]);
    });
  });

  it('two trainings on one --out: the second is refused with the first one\'s PID, the first finishes', async () => {
    const out = join(tmp.path, 'race');
    const first = spawnCli(['train', 'recipes/quickstart.yaml', '--set', 'train.epochs=40', '--out', out]);
    await waitFor(() => existsSync(`${out}.lock`));
    const second = hepoly(train(out, '--overwrite'));
    expect(second.code).to.equal(1);
    expect(second.stderr).to.match(new RegExp(`in use by PID ${first.child.pid}`));
    expect(await first.exit).to.equal(0);
    expect(JSON.parse(readFileSync(join(out, 'state.json'), 'utf8')).epochs_done).to.equal(40);
  });

  it('SIGINT during train: exit 130, says which epoch is kept and how to resume, the checkpoint loads', async () => {
    const out = join(tmp.path, 'sigint');
    const run = spawnCli(['train', 'recipes/quickstart.yaml', '--set', 'train.epochs=400', '--out', out]);
    await waitFor(() => existsSync(join(out, 'model.json')));
    run.child.kill('SIGINT');
    expect(await run.exit).to.equal(130);
    expect(run.stderr()).to.match(/error: interrupted during epoch \d+ \(batch \d+\/\d+\): the checkpoint .*sigint keeps the last complete epoch \(\d+ of 400\)\. Continue it with `hepoly train recipes\/quickstart\.yaml --resume --out /);
    const kept = Number(/keeps the last complete epoch \((\d+) of/.exec(run.stderr())![1]);
    const ev = hepoly(['eval', out, '--json']);
    expect(ev.code, ev.stderr).to.equal(0);
    expect(JSON.parse(readFileSync(join(out, 'state.json'), 'utf8')).epochs_done).to.equal(kept);
    expect(readdirSync(tmp.path).filter((f) => f.startsWith('sigint.'))).to.deep.equal([]);
  });
});

const bin = fileURLToPath(new URL('../../bin/hepoly.js', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));

function spawnCli(args: string[]) {
  const child = spawn(process.execPath, [bin, ...args], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const exit = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  return { child, exit, stderr: () => err };
}

async function waitFor(cond: () => boolean, ms = 120000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting for the condition');
    await new Promise((r) => setTimeout(r, 20));
  }
}
