import { expect } from 'chai';
import { releaseUnreferenced } from '../../src/he/server.js';
import type { Ref } from '../../src/he/protocol.js';

describe('he/server: a batch pass frees the result buffers no tensor reads any more', () => {
  it('keeps every buffer a stored tensor points into, at its index, and drops the rest', () => {
    const buffers = [0, 1, 2, 3].map((k) => new SharedArrayBuffer(1000 + k));
    const store = new Map<number, Ref[]>([
      [7, [[1, 0, 10], null, [3, 10, 5]]],
      [9, [[3, 0, 10]]],
    ]);
    releaseUnreferenced(buffers, store);
    expect(buffers.map((b) => b.byteLength)).to.deep.equal([1, 1001, 1, 1003]);
    store.delete(7);
    releaseUnreferenced(buffers, store);
    expect(buffers.map((b) => b.byteLength)).to.deep.equal([1, 1, 1, 1003]);
  });
});
