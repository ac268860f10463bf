/** Issue 19: a pipeline's default job id derives from its spec's content, not its text or file path. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { parseSpecText } from '../../cli/spec/load.js';
import { specJobId } from '../../cli/spec/identity.js';
import { canonicalJson } from '../../cli/job-identity.js';
import { tempDir } from '../helpers/env.js';

test('same spec content -> same id (comments, key order, formatting do not count); any change or an edited URL list -> another id', () => {
  const dir = tempDir();
  try {
    const urls = join(dir.path, 'urls.csv');
    writeFileSync(urls, 'url,caption\nhttp://127.0.0.1/a.jpg,a\n');
    const a = parseSpecText(
      `version: 1\nname: nightly\nsources:\n  - path: ${urls}\ncrawl:\n  image_size: 64\n  rows_per_shard: 100\n`,
      'a.yaml',
    );
    const b = parseSpecText(
      `# the same, written otherwise\ncrawl: { rows_per_shard: 100, image_size: 64 }\nsources: [{ path: "${urls}" }]\nname: nightly\nversion: 1\n`,
      'b.yaml',
    );
    const c = parseSpecText(
      `version: 1\nname: nightly\nsources:\n  - path: ${urls}\ncrawl:\n  image_size: 128\n  rows_per_shard: 100\n`,
      'c.yaml',
    );
    const id = specJobId(a);
    assert.match(id, /^nightly-[0-9a-f]{12}$/);
    assert.equal(specJobId(b), id);
    assert.notEqual(specJobId(c), id, 'a changed field is a new job');
    writeFileSync(urls, 'url,caption\nhttp://127.0.0.1/a.jpg,a\nhttp://127.0.0.1/b.jpg,b\n');
    utimesSync(urls, new Date(), new Date(Date.now() + 5000));
    assert.notEqual(specJobId(a), id, 'an edited URL list is a new job');
    assert.equal(canonicalJson({ b: 1, a: [2, { d: 3, c: undefined }] }), '{"a":[2,{"d":3}],"b":1}');
  } finally {
    dir.cleanup();
  }
});
