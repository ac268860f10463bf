/**
 * A retried run's environment: by default the first attempt's is kept; with `environment: 'latest'`
 * (crawl shards, whose retry may run without the native JPEG path) a restart of a run left
 * `running` by a dead attempt, or of a failed one, records the new attempt's, in the verified chain.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { LineageStore } from '../../infra/lineage/store.js';
import { tempDir } from '../helpers/env.js';

test('startRun: first vs latest environment of a retried run', () => {
  const dir = tempDir();
  const s = new LineageStore(join(dir.path, 'lineage.db'));
  try {
    const base = { jobId: null, stage: 'crawl.shard', params: { i: 1 }, codeVersion: 'git:x' };
    s.startRun({ ...base, id: 'keep', environment: { attempt: 1 } });
    s.startRun({ ...base, id: 'keep', environment: { attempt: 2 } }); // attempt 1 died: still `running`
    assert.deepEqual(s.getRun('keep')!.environment, { attempt: 1 });

    s.startRun(
      { ...base, id: 'latest', environment: { attempt: 1, imageCodec: 'libjpeg-turbo' } },
      { environment: 'latest' },
    );
    s.startRun(
      { ...base, id: 'latest', environment: { attempt: 3, imageCodec: 'sharp', nativeJpeg: 'off' } },
      { environment: 'latest' },
    );
    assert.deepEqual(s.getRun('latest')!.environment, { attempt: 3, imageCodec: 'sharp', nativeJpeg: 'off' });
    s.finishRun('latest', 'failed', undefined, 'boom');
    s.startRun({ ...base, id: 'latest', environment: { attempt: 4 } }, { environment: 'latest' });
    assert.equal(s.getRun('latest')!.status, 'running');
    assert.deepEqual(s.getRun('latest')!.environment, { attempt: 4 });
    s.finishRun('latest', 'completed', { rows: 1 });
    // A completed run is never rewritten.
    s.startRun({ ...base, id: 'latest', environment: { attempt: 5 } }, { environment: 'latest' });
    assert.deepEqual([s.getRun('latest')!.status, s.getRun('latest')!.environment], ['completed', { attempt: 4 }]);
    assert.equal(s.verify().ok, true);
  } finally {
    s.close();
    dir.cleanup();
  }
});
