import { expect } from 'chai';
import { allOps, getOp, HepolyError, registerOp, type OpDef } from '../../src/index.js';

/** The op registry through the public API: the shipped ops are there, and a half-written op is refused. */
describe('library API: registerOp, getOp, allOps', () => {
  it('lists the shipped ops, each with its level cost and packings', () => {
    const names = allOps().map((d) => d.name);
    for (const n of ['dense', 'conv2d', 'activation', 'avgpool', 'batchnorm', 'add']) expect(names, n).to.include(n);
    expect(getOp('dense').levelCost).to.be.a('function');
    expect(getOp('conv2d').packings).to.be.a('function');
  });

  it('refuses an op missing a face, naming the op and the face', () => {
    const { lowerHE: _dropped, ...half } = getOp('dense');
    const def = { ...half, name: 'my-dense' } as unknown as OpDef;
    expect(() => registerOp(def)).to.throw(HepolyError, /op my-dense has no lowerHE face/);
    expect(allOps().map((d) => d.name)).to.not.include('my-dense');
  });

  it('refuses a second op of a shipped name', () => {
    expect(() => registerOp(getOp('dense'))).to.throw(HepolyError, /dense is registered twice/);
  });
});
