import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

/** aria-labels of a vega SVG's mark items, parsed ("part: encrypt; milliseconds: 1,234.5") */
function markItems(svg: string, role: string): Record<string, string>[] {
  return [...svg.matchAll(/<path aria-label="([^"]*)" role="graphics-symbol" aria-roledescription="([^"]*)"/g)]
    .filter((m) => m[2] === role)
    .map((m) => Object.fromEntries(m[1].split('; ').map((kv) => kv.split(': ') as [string, string])));
}
const num = (s: string) => Number(s.replace(/,/g, ''));

describe('he-validate --report figures (SEAL, encrypted)', function () {
  this.timeout(300000);
  const tmp = tempDir();
  after(() => tmp.cleanup());

  it('writes the time split and, with --trace, the per-layer error as SVG + PNG beside the markdown, which links them', () => {
    const ckpt = join(tmp.path, 'tiny');
    const t = hepoly(['train', 'recipes/quickstart.yaml', '--set', 'train.epochs=1', '--set', 'model.hidden=[4]', '--out', ckpt]);
    expect(t.code, t.stderr).to.equal(0);
    const md = join(tmp.path, 'he.md');
    const r = hepoly(['he-validate', ckpt, '--samples', '2', '--packing', 'sample', '--workers', '1', '--trace', '--report', md, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const text = readFileSync(md, 'utf8');
    expect(text).to.include('![time split](he-time-split.svg)').and.include('![per-layer CKKS error](he-layer-error.svg)');
    for (const f of ['he-time-split.svg', 'he-time-split.png', 'he-layer-error.svg', 'he-layer-error.png']) expect(existsSync(join(tmp.path, f)), f).to.equal(true);
    expect([...readFileSync(join(tmp.path, 'he-time-split.png')).subarray(1, 4)].map((c) => String.fromCharCode(c)).join('')).to.equal('PNG');

    // the time split's bars are the run's own timings
    const bars = markItems(readFileSync(join(tmp.path, 'he-time-split.svg'), 'utf8'), 'bar');
    const j = r.json as Record<string, number>;
    const ms = Object.fromEntries(bars.map((b) => [b.part, num(b.milliseconds)]));
    for (const [part, key] of [['keygen', 'keygen_ms'], ['encrypt', 'encrypt_ms'], ['evaluate', 'evaluate_ms'], ['decrypt', 'decrypt_ms']]) {
      expect(ms[part], part).to.be.closeTo(j[key], Math.max(1e-3 * j[key], 0.01));
    }

    // one error point and one value point per traced tensor, with the markdown table's errors
    const rows = text
      .split('## Per-layer error (--trace)')[1]
      .split('\n')
      .filter((l) => /^\| .* \| \d+ \| 2\^/.test(l))
      .map((l) => l.split('|').map((c) => c.trim()));
    expect(rows.length).to.be.greaterThan(2);
    const points = markItems(readFileSync(join(tmp.path, 'he-layer-error.svg'), 'utf8'), 'point');
    expect(points).to.have.length(2 * rows.length);
    const errors = points.filter((p) => p.what === 'max abs error').map((p) => num(p['absolute value (log)']));
    rows.forEach((row, i) => expect(errors[i]).to.be.closeTo(Number(row[4]), 0.01 * Number(row[4])));
  });
});
