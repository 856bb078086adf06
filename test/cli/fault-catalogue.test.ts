import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
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
    args: (t) => ['prune', trained(t), '--sparsity', '0.5', '--out', thesis(t)],
    code: 1,
    message: /--out .*thesis: the folder exists and is not a hepoly checkpoint/,
    after: thesisIntact,
  },
  {
    name: 'he-validate --report into a missing folder is refused before the encrypted run',
    args: (t) => ['he-validate', trained(t), '--samples', '2', '--report', join(t, 'no-such', 'r.md')],
    code: 1,
    message: /--report .*no-such\/r\.md: the folder .* does not exist/,
  },
  {
    name: 'he-validate --report onto a file hepoly did not write',
    args: (t) => {
      writeFileSync(join(t, 'mine.md'), '# my notes\n');
      return ['he-validate', trained(t), '--samples', '2', '--report', join(t, 'mine.md')];
    },
    code: 1,
    message: /--report .*mine\.md: exists and was not written by hepoly/,
    after: (t) => expect(readFileSync(join(t, 'mine.md'), 'utf8')).to.equal('# my notes\n'),
  },
  ...flagCases(),
  ...recipeCases(),
];

/** One small trained checkpoint shared by the rows that only read it (trained on first use). */
let sharedCheckpoint: string | null = null;
const trained = (t: string) => {
  if (!sharedCheckpoint) {
    sharedCheckpoint = join(t, '..', 'shared-q');
    expect(hepoly(train(sharedCheckpoint)).code).to.equal(0);
  }
  return sharedCheckpoint;
};

function flagCases(): Case[] {
  const usage = (name: string, args: (t: string) => string[], message: RegExp): Case => ({ name, args, code: 2, message });
  return [
    usage('he-validate --samples 0', (t) => ['he-validate', trained(t), '--samples', '0'], /--samples: expected a positive integer or "all", found "0"/),
    usage('he-validate --samples with no value', (t) => ['he-validate', trained(t), '--samples'], /--samples: expected a positive integer or "all", found no value/),
    usage('he-validate --samples abc', (t) => ['he-validate', trained(t), '--samples', 'abc'], /--samples: .*found "abc"/),
    usage('he-validate --workers 0', (t) => ['he-validate', trained(t), '--workers', '0'], /--workers: expected an integer from 1 to \d+, found 0/),
    usage('he-validate --workers 1000', (t) => ['he-validate', trained(t), '--workers', '1000'], /--workers: expected an integer from 1 to \d+, found 1000/),
    usage('he-validate --workers-per-sample 0', (t) => ['he-validate', trained(t), '--workers-per-sample', '0'], /--workers-per-sample: expected an integer from 1 to 1024, found 0/),
    usage('he-validate --workers-per-sample that does not divide --workers', (t) => ['he-validate', trained(t), '--workers', '1', '--workers-per-sample', '2'], /--workers-per-sample 2 does not divide --workers 1: use a divisor/),
    usage('he-validate --workers-per-sample with batch packing', (t) => ['he-validate', trained(t), '--samples', '2', '--packing', 'batch', '--workers', '2', '--workers-per-sample', '2'], /--workers-per-sample 2: only sample packing splits one sample over several workers, and --packing batch spreads each layer over all of them already\. Use --packing sample/),
    usage('prune --epochs -1', (t) => ['prune', trained(t), '--sparsity', '0.5', '--epochs', '-1'], /--epochs: expected an integer from 0 to 10000, found -1/),
    usage('a malformed --set', () => ['train', 'recipes/quickstart.yaml', '--set', 'notakey'], /--set notakey: expected key\.path=value/),
    usage('a bare hepoly lists every command', () => [], /name a command: train, eval, summary, he-validate, he-plan, prune/),
    {
      name: 'prune --tile larger than every layer would prune nothing',
      args: (t) => ['prune', trained(t), '--sparsity', '0.5', '--tile', '64', '--out', join(t, 'p')],
      code: 1,
      message: /tile \(--tile \/ prune\.tile\) 64: .*layers of 32, 16 units, so nothing would be pruned\. Use a smaller tile/,
      after: (t) => expect(existsSync(join(t, 'p'))).to.equal(false),
    },
  ];
}

function recipeCases(): Case[] {
  const refused = (name: string, set: string[], message: RegExp): Case => ({
    name,
    args: (t) => ['train', 'recipes/quickstart.yaml', ...set.flatMap((s) => ['--set', s]), '--out', join(t, 'out')],
    code: 1,
    message,
    after: (t) => expect(existsSync(join(t, 'out'))).to.equal(false),
  });
  return [
    refused('data.split.validation: 0 (no validation sample)', ['data.split.validation=0'], /data\.split\.validation: 0 leaves no validation sample of 569/),
    refused('data.split.validation: 1 (two training samples)', ['data.split.validation=1'], /data\.split\.validation: 1 leaves 2 training samples of 569/),
    refused('train.batch: 1e9 is refused up front with the estimate', ['train.batch=1e9'], /need at least [\d.]+ GiB to train.*this machine has/),
    refused('model.hidden: [1e9] is refused up front with the estimate', ['model.hidden=[1e9]'], /need at least [\d.]+ GiB to train/),
    refused('1e400 is named as too large, and blamed on --set', ['train.epochs=1e400'], /^error: --set train\.epochs=1e400: train\.epochs: expected number, found Infinity \(a number too large/),
    {
      name: 'a CSV with a single class',
      args: (t) => {
        writeFileSync(join(t, 'one.csv'), 'a,b,y\n' + Array.from({ length: 40 }, (_, i) => `${i},${i * 2},yes`).join('\n') + '\n');
        return ['train', 'recipes/quickstart.yaml', '--set', `data.path=${join(t, 'one.csv')}`, '--set', 'data.label=y', '--out', join(t, 'out')];
      },
      code: 1,
      message: /one\.csv.*only one class \("yes"\).*at least two/,
    },
    {
      name: 'a YAML alias bomb',
      args: (t) => {
        const lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
        for (let i = 1; i < 9; i++) lines.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${String.fromCharCode(96 + i)}`).join(',')}]`);
        writeFileSync(join(t, 'bomb.yaml'), lines.join('\n') + '\n');
        return ['train', join(t, 'bomb.yaml')];
      },
      code: 1,
      message: /bomb\.yaml: not a usable recipe: .*alias/i,
    },
    {
      name: 'a missing recipe in another folder is not replaced by the shipped one',
      args: (t) => ['train', join(t, 'elsewhere', 'quickstart.yaml')],
      code: 1,
      message: /recipe file not found: .*elsewhere\/quickstart\.yaml \(did you mean recipes\/quickstart\.yaml\?\)/,
    },
    {
      name: 'a CRLF recipe: the error names the right line',
      args: (t) => {
        writeFileSync(join(t, 'crlf.yaml'), 'name: crlf\r\ndata: {source: csv, path: datasets/iris.csv, label: species}\r\nmodel: {kind: mlp, hidden: [4]}\r\ntrain: {epochs: two}\r\n');
        return ['train', join(t, 'crlf.yaml'), '--out', join(t, 'out')];
      },
      code: 1,
      message: /crlf\.yaml:4: train\.epochs: expected number, found "two"/,
    },
    {
      name: 'a CRLF CSV with an extra cell: the right line and cell count',
      args: (t) => {
        const lines = readFileSync(fileURLToPath(new URL('../../datasets/iris.csv', import.meta.url)), 'utf8').replace(/\r/g, '').trim().split('\n');
        lines[5] += ',9';
        writeFileSync(join(t, 'bad.csv'), lines.join('\r\n') + '\r\n');
        return ['train', 'recipes/quickstart.yaml', '--set', `data.path=${join(t, 'bad.csv')}`, '--set', 'data.label=species', '--out', join(t, 'out')];
      },
      code: 1,
      message: /bad\.csv .*line 6: expected 5 cells, one per header column, found 6 cells/,
    },
    { name: 'an https:// recipe', args: () => ['train', 'https://example.com/quickstart.yaml'], code: 1, message: /hepoly reads local files only, not URLs/ },
    { name: 'a file:// recipe', args: () => ['train', 'file:///tmp/quickstart.yaml'], code: 1, message: /hepoly reads local files only, not URLs/ },
  ];
}

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
        // one line; a usage error may add the pointer to --help
        expect(err.split('\n').filter((l) => !/^Run `hepoly --help`/.test(l))).to.have.length(1);
        expect(err).to.match(/^error: /);
        expect(err).to.match(c.message);
      }
      c.after?.(t);
      expect(readdirSync(t).filter((f) => /\.(tmp|prev)-|\.hepoly-write-test/.test(f)), 'no temporary files left').to.deep.equal([]);
    });
  });

  it('a checkpoint works from any folder; moved data is named in its recipe.yaml and found with --data', () => {
    const t = join(tmp.path, 'moved');
    mkdirSync(join(t, 'run', 'data'), { recursive: true });
    writeFileSync(join(t, 'run', 'data', 'bc.csv'), readFileSync(fileURLToPath(new URL('../../datasets/breast-cancer-wisconsin.csv', import.meta.url))));
    writeFileSync(join(t, 'run', 'r.yaml'), 'name: moved\ndata: {source: csv, path: data/bc.csv, label: diagnosis}\nmodel: {kind: mlp, hidden: [4]}\ntrain: {epochs: 1}\n');
    expect(hepoly(['train', 'r.yaml', '--out', 'ck'], { cwd: join(t, 'run') }).code).to.equal(0);
    const fromElsewhere = hepoly(['eval', join(t, 'run', 'ck'), '--json'], { cwd: t });
    expect(fromElsewhere.code, fromElsewhere.stderr).to.equal(0);
    mkdirSync(join(t, 'moved-data'));
    renameSync(join(t, 'run', 'data'), join(t, 'moved-data', 'data'));
    const lost = hepoly(['eval', join(t, 'run', 'ck')], { cwd: t });
    expect(lost.code).to.equal(1);
    expect(lost.stderr).to.match(/ck\/recipe\.yaml: data\.path: data file "data\/bc\.csv" not found.*--data DIR/);
    const found = hepoly(['eval', join(t, 'run', 'ck'), '--data', join(t, 'moved-data'), '--json'], { cwd: t });
    expect(found.code, found.stderr).to.equal(0);
    expect(found.json!.accuracy).to.equal(fromElsewhere.json!.accuracy);
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
    expect(run.stderr()).to.match(/error: interrupted (before epoch \d+|during epoch \d+ \(batch \d+\/\d+\)): the checkpoint .*sigint keeps the last complete epoch \(\d+ of 400\)\. Continue it with `hepoly train recipes\/quickstart\.yaml --resume --out /);
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
