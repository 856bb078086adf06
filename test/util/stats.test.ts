import { expect } from 'chai';
import { median } from '../../src/util/stats.js';

describe('util/stats: median', () => {
  it('takes the middle value of an odd count and the mean of the middle two of an even one, leaving the input as it was', () => {
    const xs = [9, 1, 5];
    expect(median(xs)).to.equal(5);
    expect(xs).to.deep.equal([9, 1, 5]);
    expect(median([4, 1, 3, 2])).to.equal(2.5);
    expect(median([7])).to.equal(7);
  });
});
