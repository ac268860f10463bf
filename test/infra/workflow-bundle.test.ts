/**
 * The on-disk workflow bundle cache: the cached bundle is the one webpack builds from the same
 * compiled code, and a second call reads the same bytes from the cache (keyed by the code's hash).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode } from '@temporalio/worker';
import { bundleKey, cachedWorkflowBundle } from '../../infra/temporal/workflow-bundle.js';

const DIST = fileURLToPath(new URL('../../', import.meta.url));

describe('workflow bundle cache', () => {
  it('stores the bundle webpack builds under the hash of the code, and reads it back unchanged', async () => {
    const key = bundleKey();
    assert.match(key, /^[0-9a-f]{64}$/);
    assert.equal(bundleKey(), key, 'the key is a function of the compiled code only');
    const first = await cachedWorkflowBundle();
    const cached = join(DIST, '.workflow-bundles', `${key}.js`);
    assert.ok(existsSync(cached), `expected ${cached}`);
    assert.equal(readFileSync(cached, 'utf8'), first.code);
    const second = await cachedWorkflowBundle();
    assert.equal(second.code, first.code);
    const fresh = await bundleWorkflowCode({
      workflowsPath: join(DIST, 'workflows', 'index.js'),
      logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} },
    });
    assert.equal(fresh.code, first.code, 'the cached bundle is what webpack builds from this code');
  });
});
