import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCsvText, readCsv, type SourceRef } from '../../src/data/csv.js';
import { HepolyError } from '../../src/util/errors.js';

const RECIPE = 'recipes/test-recipe.yaml';

function refFor(file: string): SourceRef {
  return { file, field: 'data.path', recipeFile: RECIPE };
}

async function expectError(fn: () => unknown, parts: string[]): Promise<string> {
  let caught: unknown;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a HepolyError').to.be.instanceOf(HepolyError);
  const msg = (caught as Error).message;
  for (const p of parts) expect(msg, msg).to.include(p);
  return msg;
}

describe('data/csv', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'hepoly-csv-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  function fixture(name: string, text: string): string {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  }

  it('parses the breast cancer file: 569 rows, 30 features, two classes', async () => {
    const t = await readCsv('datasets/breast-cancer-wisconsin.csv', { label: 'diagnosis' }, refFor('datasets/breast-cancer-wisconsin.csv'));
    expect(t.count).to.equal(569);
    expect(t.columns).to.have.length(31);
    expect(t.features).to.have.length(30);
    expect(t.features).to.not.include('diagnosis');
    expect(t.features[0]).to.equal('mean_radius');
    expect(t.x.length).to.equal(569 * 30);
    expect([...new Set(t.labels)].sort()).to.deep.equal(['benign', 'malignant']);
    expect(t.labels.filter((l) => l === 'benign')).to.have.length(357);
    expect(t.x[0]).to.be.closeTo(17.99, 1e-5);
    expect(t.x[29]).to.be.closeTo(0.1189, 1e-6);
    expect(t.labels[0]).to.equal('malignant');
  });

  it('parses iris: 150 rows, 4 features, 3 classes', async () => {
    const t = await readCsv('datasets/iris.csv', { label: 'species' }, refFor('datasets/iris.csv'));
    expect(t.count).to.equal(150);
    expect(t.features).to.deep.equal(['sepal_length', 'sepal_width', 'petal_length', 'petal_width']);
    expect(new Set(t.labels)).to.deep.equal(new Set(['setosa', 'versicolor', 'virginica']));
    expect(Array.from(t.x.subarray(0, 4))).to.deep.equal([5.1, 3.5, 1.4, 0.2].map(Math.fround));
  });

  it('uses the features list in the given order', () => {
    const t = parseCsvText('a,b,label,c\n1,2,x,3\n4,5,y,6\n', { label: 'label', features: ['c', 'a'] }, refFor('t.csv'));
    expect(t.features).to.deep.equal(['c', 'a']);
    expect(Array.from(t.x)).to.deep.equal([3, 1, 6, 4]);
    expect(t.labels).to.deep.equal(['x', 'y']);
  });

  it('handles a BOM, CRLF line ends, quotes, blank lines and spaces', () => {
    const text = '\ufeff"a", b ,label\r\n1, 2.5e1 ,"cat"\r\n\r\n-3,4,dog\r\n';
    const t = parseCsvText(text, { label: 'label' }, refFor('t.csv'));
    expect(t.columns).to.deep.equal(['a', 'b', 'label']);
    expect(Array.from(t.x)).to.deep.equal([1, 25, -3, 4]);
    expect(t.labels).to.deep.equal(['cat', 'dog']);
  });

  it('errors on a missing file', async () => {
    const p = join(dir, 'nope.csv');
    await expectError(() => readCsv(p, { label: 'y' }, refFor(p)), [p, 'not found', 'data.path', RECIPE]);
  });

  it('errors on a missing label column, listing the columns and a did-you-mean', async () => {
    const p = fixture('label.csv', 'sepal,petal,species\n1,2,a\n');
    const msg = await expectError(
      () => readCsv(p, { label: 'specie' }, refFor(p)),
      [p, RECIPE, 'data.label', '"specie"', '"sepal", "petal", "species"', 'did you mean "species"', 'Set data.label'],
    );
    expect(msg).to.match(/expected a column named "specie"/);
  });

  it('errors on a missing feature column, naming the data.features entry', async () => {
    const p = fixture('feat.csv', 'width,height,y\n1,2,a\n');
    await expectError(
      () => readCsv(p, { label: 'y', features: ['width', 'heigth'] }, refFor(p)),
      [p, RECIPE, 'data.features[1]', '"heigth"', 'did you mean "height"', 'Correct data.features[1]'],
    );
  });

  it('errors when the label column is listed as a feature', async () => {
    const p = fixture('labfeat.csv', 'a,y\n1,x\n');
    await expectError(() => readCsv(p, { label: 'y', features: ['a', 'y'] }, refFor(p)), [p, 'data.features[1]', 'label column', 'Remove "y"']);
  });

  it('errors on a non-numeric cell with the line (header = line 1), column and value', async () => {
    const p = fixture('nan.csv', 'a,b,y\n1,2,x\n3,4,x\n5,abc,y\n');
    await expectError(
      () => readCsv(p, { label: 'y' }, refFor(p)),
      [p, RECIPE, 'line 4', 'column "b"', 'expected a number', 'found "abc"', 'Fix or fill in that cell'],
    );
  });

  it('counts lines as in the file when blank lines and multi-line quoted cells come first', async () => {
    const p = fixture('lines.csv', 'a,b,y\n1,2,"multi\nline"\n\n3,x,z\n');
    await expectError(() => readCsv(p, { label: 'y' }, refFor(p)), ['line 5', 'column "b"', 'found "x"']);
  });

  it('errors on an empty feature cell', async () => {
    const p = fixture('empty.csv', 'a,b,y\n1,2,x\n,4,x\n');
    await expectError(() => readCsv(p, { label: 'y' }, refFor(p)), [p, 'line 3', 'column "a"', 'found an empty cell', 'fill in']);
  });

  it('errors on an empty label cell', async () => {
    const p = fixture('emptylabel.csv', 'a,y\n1,x\n2,\n');
    await expectError(() => readCsv(p, { label: 'y' }, refFor(p)), [p, 'line 3', 'column "y"', 'expected a class label']);
  });

  it('errors on ragged rows, naming the line and the cell counts', async () => {
    const p = fixture('ragged.csv', 'a,b,y\n1,2,x\n3,x\n');
    await expectError(
      () => readCsv(p, { label: 'y' }, refFor(p)),
      [p, RECIPE, 'line 3', 'expected 3 cells', 'found 2 cells', 'missing or extra comma'],
    );
    const q = fixture('ragged2.csv', 'a,b,y\n1,2,x,9\n');
    await expectError(() => readCsv(q, { label: 'y' }, refFor(q)), [q, 'line 2', 'found 4 cells']);
  });

  it('errors on empty files, header-only files, duplicate and unclosed-quote headers', async () => {
    await expectError(() => parseCsvText('', { label: 'y' }, refFor('e.csv')), ['e.csv', 'empty file']);
    await expectError(() => parseCsvText('a,y\n', { label: 'y' }, refFor('h.csv')), ['h.csv', 'only the header line']);
    await expectError(() => parseCsvText('a,a,y\n1,2,x\n', { label: 'y' }, refFor('d.csv')), ['d.csv', 'distinct column names', '"a" twice']);
    await expectError(() => parseCsvText('a,y\n"1,x\n', { label: 'y' }, refFor('q.csv')), ['q.csv', 'not a valid CSV file', 'quot']);
  });
});
