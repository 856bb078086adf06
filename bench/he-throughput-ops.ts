/**
 * `npx tsx bench/he-throughput-ops.ts [N]`: where a he-bench-mnist batch pass spends its time. The
 * pass is ~30k products of a ciphertext with a scalar weight plus an add (mulConstAddInPlace);
 * this times one of them on the pass's chain at the top level, split into SEAL's multiply_plain
 * on a prebuilt plaintext, building the constant plaintext, and the add (CPU ms, one thread).
 */
import { HEClient } from '../src/he/client.js';
import { loadEvaluationKeys } from '../src/he/keys.js';
import { SealBackend } from '../src/he/seal-backend.js';
import type { PlainText } from '../src/he/seal.js';
/** the backend's private constant-plaintext builder, timed on its own */
type WithConstPlain = { constPlain(value: number, scale: number, level: number): PlainText };

const N = Number(process.argv[2] ?? 8192);
const params = { polyModulusDegree: N, coeffModulusBits: [38, 28, 28, 28, 28, 28, 38], scaleBits: 28 };
const client = await HEClient.create(params);
const be = new SealBackend(client.ctx, loadEvaluationKeys(client.ctx, client.publicBundle([1])));
const v = Float64Array.from({ length: be.slots }, (_, i) => Math.sin(i) * 0.5);
const c = be.deserialize(client.encrypt([v])[0]);
// enough repetitions that one measurement is well above the timer's resolution
const reps = 300;
const cpu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const time = (f: () => void) => { f(); const t = cpu(); for (let i = 0; i < reps; i++) f(); return (cpu() - t) / reps; };
const acc = be.mulConst(c, 0.3, be.scale);
const tConst = time(() => be.free(be.mulConst(c, 0.37, be.scale)));
const tConstAdd = time(() => be.mulConstAddInPlace(acc, c, 0.37, be.scale));
const pt = (be as unknown as WithConstPlain).constPlain(0.37, be.scale, be.levelOf(c));
const tBuild = time(() => (be as unknown as WithConstPlain).constPlain(0.37 + Math.random() * 1e-3, be.scale, be.levelOf(c)));
const tPlainOnly = time(() => be.free(be.mulPlain(c, pt)));
const acc2 = be.clone(acc);
const tAdd = time(() => be.addInPlace(acc, acc2));
console.log(JSON.stringify({ N, level: be.levelOf(c), mulConst_ms: tConst, mulConstAdd_ms: tConstAdd, constPlain_build_ms: tBuild, multiplyPlain_prebuilt_ms: tPlainOnly, add_ms: tAdd }));
