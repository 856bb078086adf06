import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { atCurrentSpeed, calibration, calibrationKey, type Calibration } from '../../src/he/tiles/calibrate.js';
import { tempDir } from '../helpers/tmp.js';
import { measuredPasses } from '../../src/he/tiles/plan.js';
import { latencyRatio } from '../../src/cli/he-plan.js';
import { OP_KINDS, type OpKind } from '../../src/he/tiles/dry-run.js';

const ops = Object.fromEntries(OP_KINDS.map((k, i) => [k, { base: 0.1 * i, perPrime: 0.5 + i }])) as Calibration['ops'];
const cached: Calibration = { key: 'k', measuredAt: '2026-11-28T09:00:00Z', ops, probeMs: 100 };

describe('he/tiles/calibrate: a cached calibration follows the load of now', () => {

  it('scales every operation by the ratio of the speed probes', () => {
    const slower = atCurrentSpeed(cached, 250);
    for (const k of OP_KINDS as readonly OpKind[]) {
      expect(slower.ops[k].base).to.be.closeTo(ops[k].base * 2.5, 1e-12);
      expect(slower.ops[k].perPrime).to.be.closeTo(ops[k].perPrime * 2.5, 1e-12);
    }
    expect(slower.probeMs).to.equal(250);
    expect(atCurrentSpeed(cached, 50).ops.rotate.perPrime).to.be.closeTo(ops.rotate.perPrime / 2, 1e-12);
  });

  it('leaves a cache entry without a probe time as it was', () => {
    const old = { ...cached, probeMs: undefined };
    expect(atCurrentSpeed(old, 250).ops).to.deep.equal(ops);
  });

  it('measures again instead of trusting a cached entry that has no probe time (it cannot be scaled to now)', async function () {
    this.timeout(120000);
    const tmp = tempDir();
    try {
      const params = { polyModulusDegree: 4096, coeffModulusBits: [40, 30, 39], scaleBits: 30 };
      const cachePath = join(tmp.path, 'cal.json');
      const key = calibrationKey(params);
      writeFileSync(cachePath, JSON.stringify({ [key]: { ...cached, key, probeMs: undefined } }));
      const c = await calibration(params, { cachePath });
      expect(c.probeMs).to.be.above(0);
      expect(c.measuredAt).to.not.equal(cached.measuredAt);
      const stored = JSON.parse(readFileSync(cachePath, 'utf8'))[key] as Calibration;
      expect(stored.probeMs).to.be.above(0);
      // with its probe it is now served from the cache, at the same speed as the fresh one was
      // returned (one probe serves both), so a plan ranks alike on a cold and a warm cache
      const again = await calibration(params, { cachePath });
      expect(again.measuredAt).to.equal(stored.measuredAt);
      expect(again.ops).to.deep.equal(c.ops);
    } finally {
      tmp.cleanup();
    }
  });
});

describe('he/tiles/calibrate: which parameters share a calibration', () => {
  it('chains of one length at one ring share it; another length or ring has its own', () => {
    const key = (N: number, bits: number[]) => calibrationKey({ polyModulusDegree: N, coeffModulusBits: bits, scaleBits: 30 });
    expect(key(8192, [36, 28, 28, 36])).to.equal(key(8192, [60, 40, 40, 60]));
    expect(key(8192, [36, 28, 28, 36])).to.not.equal(key(8192, [36, 28, 28, 28, 36]));
    expect(key(8192, [36, 28, 28, 36])).to.not.equal(key(16384, [36, 28, 28, 36]));
  });

  it('a cached calibration of another chain of the same length is used without measuring', async () => {
    const tmp = tempDir();
    try {
      const cachePath = join(tmp.path, 'cal.json');
      const stored = { ...cached, key: calibrationKey({ polyModulusDegree: 4096, coeffModulusBits: [40, 30, 39], scaleBits: 30 }) };
      writeFileSync(cachePath, JSON.stringify({ [stored.key]: stored }));
      const c = await calibration({ polyModulusDegree: 4096, coeffModulusBits: [38, 25, 38], scaleBits: 25 }, { cachePath });
      expect(c.measuredAt).to.equal(cached.measuredAt);
    } finally {
      tmp.cleanup();
    }
  });
});

describe('he-plan --measure: warm passes and the thread speed', () => {
  it('runs up to 3 warm passes after the first while they fit 20 s, one pass for a prediction over a minute', () => {
    expect(measuredPasses(500)).to.equal(4);
    expect(measuredPasses(8000)).to.equal(3);
    expect(measuredPasses(15000)).to.equal(2);
    expect(measuredPasses(59000)).to.equal(2);
    expect(measuredPasses(61000)).to.equal(1);
  });

  it('compares a measurement with the prediction brought to the measuring thread\'s speed', () => {
    // the measuring thread ran at 0.75 of the planning thread's speed: 1.3 s measured against 1 s predicted is 0.975 at equal speed
    expect(latencyRatio(1000, { latencyMs: 1300, threadSpeed: 0.75 })).to.be.closeTo(0.975, 1e-12);
    expect(latencyRatio(1000, { latencyMs: 900, threadSpeed: 1 })).to.be.closeTo(0.9, 1e-12);
  });
});
