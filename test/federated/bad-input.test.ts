import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hepoly } from '../helpers/cli.js';
import { tempDir } from '../helpers/tmp.js';

/** Bad input to `hepoly federate` ends in one message naming the file, the field and the fix, exit code 1 or 2. */
const dataset = fileURLToPath(new URL('../../datasets/breast-cancer-wisconsin.csv', import.meta.url));

describe('federated: bad input', function () {
  this.timeout(180000);
  const tmp = tempDir('hepoly-fl-bad-');
  after(() => tmp.cleanup());
  const parties = ['a', 'b', 'c'].map((p) => join(tmp.path, `${p}.csv`));
  const recipe = join(tmp.path, 'r.yaml');
  before(() => {
    writeFileSync(
      recipe,
      `name: bad
data: {source: csv, path: ${dataset}, label: diagnosis}
model: {kind: mlp, hidden: [2]}
federated:
  partition: horizontal
  parties:
${parties.map((p, i) => `    - {name: p${i}, path: ${p}}`).join('\n')}
  rounds: 1
`,
    );
    // rows of the shipped CSV dealt to three files; the third with a renamed column
    const [head, ...rows] = readFileSync(dataset, 'utf8').trim().split('\n');
    parties.forEach((p, i) => {
      const h = i === 2 ? head.replace('mean_radius', 'radius_mean') : head;
      writeFileSync(p, [h, ...rows.filter((_, k) => k % 3 === i)].join('\n') + '\n');
    });
  });

  it('a party whose columns differ from the recipe\'s', () => {
    const r = hepoly(['federate', recipe]);
    expect(r.code).to.equal(1);
    const line = r.stderr.split('\n').find((l) => l.startsWith('error:'))!;
    expect(line).to.match(/c\.csv \(federated\.parties\[2\]\.path in .*r\.yaml\): its columns differ from the recipe's, expected the 31 columns of data\.path .*missing "mean_radius"; unexpected "radius_mean"\. Every horizontal party must hold the same columns/);
  });

  it('dp with batchnorm (a record\'s clipped gradient would depend on its batch)', () => {
    const two = `federated.parties=[{name: p0, path: ${parties[0]}}, {name: p1, path: ${parties[1]}}]`;
    const r = hepoly(['federate', recipe, '--set', two, '--set', 'model.batchnorm=true', '--set', 'federated.dp={epsilon: 8, delta: 1.0e-5, clip: 1.0}']);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/r\.yaml: federated\.dp: per-record gradient clipping cannot be combined with batchnorm .*Set model\.batchnorm: false, or remove federated\.dp/);
    expect(r.stderr).to.not.match(/    at /);
  });

  it('an unreachable coordinator', () => {
    const r = hepoly(['federate', 'party', recipe, '--name', 'p0', '--coordinator', 'http://127.0.0.1:9'], { env: { HEPOLY_FED_CONNECT_TIMEOUT_MS: '1500' } });
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^error: party p0: cannot reach the coordinator at http:\/\/127\.0\.0\.1:9 \(ECONNREFUSED\) for 2 s\. Start it first \(hepoly federate coordinator RECIPE --port P\)/m);
  });

  it('epsilon <= 0', () => {
    for (const eps of ['0', '-1']) {
      const r = hepoly(['federate', recipe, '--set', `federated.dp={epsilon: ${eps}}`]);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(/federated\.dp\.epsilon/);
      expect(r.stderr).to.match(/epsilon must be > 0: it is the privacy budget/);
    }
  });

  it('a party name not in the recipe', () => {
    const r = hepoly(['federate', 'party', recipe, '--name', 'nobody', '--coordinator', 'http://127.0.0.1:9']);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/--name nobody: not a party of .*r\.yaml \(federated\.parties: p0, p1, p2\)/);
  });
});
