import { expect } from 'chai';
import { HepolyError } from '../../src/util/errors.js';
import { RemoteError } from '../../src/deploy/client/remote-model.js';

describe('util/errors: HepolyError across copies of its module', () => {
  it('a HepolyError from a second instance of the module is still a HepolyError', async () => {
    // a query string makes the loader evaluate the file again: the queue, loaded by import(),
    // threw such a copy, and its refresh-watch stop was reported as "lost Redis"
    const copy = (await import(`../../src/util/errors.ts?copy=${Date.now()}`)) as { HepolyError: typeof HepolyError };
    expect(copy.HepolyError).to.not.equal(HepolyError);
    const e = new copy.HepolyError('from the other copy', { exitCode: 2 });
    expect(e instanceof HepolyError).to.equal(true);
    expect(new HepolyError('here') instanceof copy.HepolyError).to.equal(true);
  });

  it('other errors are not HepolyErrors, and subclasses keep their own check', () => {
    expect(new Error('plain') instanceof HepolyError).to.equal(false);
    expect((null as unknown as object) instanceof HepolyError).to.equal(false);
    expect(Object.assign(new Error('named'), { name: 'HepolyError' }) instanceof HepolyError).to.equal(false);
    const remote = new RemoteError(400, 'server said no');
    expect(remote instanceof HepolyError).to.equal(true);
    expect(remote instanceof RemoteError).to.equal(true);
    expect(new HepolyError('base') instanceof RemoteError).to.equal(false);
  });
});
