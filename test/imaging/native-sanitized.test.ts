/**
 * The native addon under AddressSanitizer + UBSan (issue 13): infra/imaging/native/sanitize.sh builds
 * the sanitizer build and runs the randomized differential check (native-random-cases.ts) through
 * process(), decodeRgb() and resizeRgb(): the root-cause regressions first, then a short random form
 * (the full 5,000-case form is `npm run test:native-asan`). Any out-of-bounds access, use after free
 * or undefined behaviour aborts the child and fails this test. Skipped, saying why, only when the
 * addon itself is not built here (then no native code runs at all).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { nativeJpeg, nativeJpegStatus } from '../../infra/imaging/native-jpeg.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const skip = nativeJpeg ? false : `native JPEG path not built: ${nativeJpegStatus}`;

describe('native addon under ASan + UBSan', { skip }, () => {
  it('runs the regressions and 300 random cases with no sanitizer report and no mismatch', () => {
    const env = { ...process.env };
    delete env.KILN_NATIVE_JPEG_ADDON;
    const r = spawnSync('bash', ['infra/imaging/native/sanitize.sh', '--cases', '300', '--seed', '7'], {
      cwd: ROOT,
      env,
      encoding: 'utf8',
      timeout: 600_000,
    });
    const out = `${r.stdout}\n${r.stderr}`;
    assert.equal(r.status, 0, `sanitize.sh exited ${r.status} (signal ${r.signal}):\n${out.slice(-6000)}`);
    assert.doesNotMatch(out, /AddressSanitizer|runtime error|LeakSanitizer/);
    const summary = /native random cases: (\d+) regression \+ (\d+) random cases .* (\d+) failures/.exec(out);
    assert.ok(summary, `no summary line in:\n${out.slice(-3000)}`);
    assert.deepEqual([Number(summary[1]), Number(summary[2]), Number(summary[3])], [36, 300, 0]);
  });
});
