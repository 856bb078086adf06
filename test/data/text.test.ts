import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadData, textVocabulary, encodeText } from '../../src/data/index.js';
import { RecipeSchema } from '../../src/recipe/schema.js';
import { tempDir } from '../helpers/tmp.js';

describe('text data (character language models)', () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());
  const text = 'abcdefghij\nklmnopqrst\n'.repeat(10); // 220 characters
  const file = join(tmp.path, 'small.txt');
  writeFileSync(file, text);
  const cfg = (data: Record<string, unknown>) =>
    RecipeSchema.parse({ name: 't', data: { source: 'text', path: file, context: 5, ...data }, model: { kind: 'transformer', task: 'lm' } }).data;

  it('windows of context ids -> next id; contiguous train / validation / test parts', async () => {
    const d = await loadData(cfg({ split: { validation: 0.1, test: 0.1 } }), { seed: 1 });
    const vocab = d.preprocess.labels;
    expect(vocab).to.deep.equal(textVocabulary(text));
    expect(vocab[0]).to.equal('\n');
    expect(d.preprocess.inputShape).to.deep.equal([5]);
    // 220 chars: test 22, validation 22, train 176 -> 171 / 17 / 17 windows
    expect([d.train.count, d.validation.count, d.test!.count]).to.deep.equal([171, 17, 17]);
    const decode = (ids: ArrayLike<number>) => Array.from(ids, (i) => vocab[i]).join('');
    expect(decode(d.train.x.subarray(0, 5))).to.equal('abcde');
    expect(vocab[d.train.y[0]]).to.equal('f');
    expect(decode(d.train.x.subarray(5, 10))).to.equal('bcdef');
    // the test part is the end of the text
    const last = d.test!.count - 1;
    expect(decode(d.test!.x.subarray(last * 5, last * 5 + 5)) + vocab[d.test!.y[last]]).to.equal(text.slice(-6));
    expect(decode(d.validation.x.subarray(0, 5))).to.equal(text.slice(176, 181));
  });

  it('stride and limit thin the training windows', async () => {
    const d = await loadData(cfg({ stride: 3 }), { seed: 1 });
    const full = await loadData(cfg({}), { seed: 1 });
    expect(d.train.count).to.equal(Math.ceil(full.train.count / 3));
    const lim = await loadData(cfg({ limit: 10 }), { seed: 1 });
    expect(lim.train.count).to.equal(10);
  });

  it('a character outside the vocabulary names the file, line, column and character', async () => {
    const bad = join(tmp.path, 'bad.txt');
    writeFileSync(bad, 'hello\nwor\u00e9d\n');
    let err: Error | null = null;
    try {
      await loadData(RecipeSchema.parse({ name: 't', data: { source: 'text', path: bad, context: 2, vocab: 'helowrd\n' }, model: { kind: 'transformer', task: 'lm' } }).data, { seed: 1, recipeFile: 'r.yaml' });
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).to.match(/bad\.txt:2:4: character "é" \(U\+00E9\) is not in the vocabulary/);
    expect(err?.message).to.match(/data\.vocab in r\.yaml/);
    // a saved vocabulary (evaluating a checkpoint) refuses new characters the same way
    expect(() => encodeText('ab\nc!', ['a', 'b', 'c', '\n'], 'x.txt', 'fix')).to.throw(/x\.txt:2:2: character "!" \(U\+0021\)/);
  });

  it('a context longer than a part of the text is refused with the numbers', async () => {
    let err: Error | null = null;
    try {
      await loadData(cfg({ context: 30, split: { validation: 0.1, test: 0.1 } }), { seed: 1 });
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).to.match(/data\.context: the validation part .* has 22 characters, not more than the context of 30/);
  });
});
