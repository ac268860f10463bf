/**
 * `kiln lineage trace` text (issue 16, part 6): a real lineage store holding a crawl of 4 shards and a
 * filter whose 4 shard runs each consume the same 6 model files; the tree has one short line per
 * node (kind, short name, 12-hex hash, size, key params), shared model files appear once and then as
 * one "seen above" line per run, long sibling lists are cut with a count, and no crawl option blob
 * or full hash is printed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { LineageStore } from '../../infra/lineage/store.js';
import { resolveArtifactRef, traceArtifact } from '../../infra/lineage/trace.js';
import { humanBytes, keyParams, renderTraceTree } from '../../cli/trace-tree.js';
import { tempDir } from '../helpers/env.js';

const hex = (i: number) => i.toString(16).padStart(2, '0').repeat(32);
const CRAWL_OPTIONS = {
  imageSize: 256,
  resizeMode: 'keep_ratio',
  timeoutMs: 10000,
  retries: 2,
  concurrency: 64,
  allowAddresses: ['127.0.0.1'],
  encodeQuality: 95,
};

function record(s: LineageStore): void {
  s.startJob({ id: 'j', kind: 'pipeline', workflowId: 'j', params: {}, codeVersion: 'git:aaa' });
  s.startRun({
    id: 'j/crawl/plan',
    jobId: 'j',
    stage: 'crawl.plan',
    params: { datasetName: 'web', inputs: ['/in/urls.csv'], options: CRAWL_OPTIONS },
    codeVersion: 'git:aaa',
  });
  s.recordArtifactOfRun('j/crawl/plan', 'consumed', {
    uri: 'file:///in/urls.csv',
    kind: 'url-list',
    sha256: hex(1),
    bytes: 12_345,
  });
  s.finishRun('j/crawl/plan', 'completed');
  s.startRun({
    id: 'j/filter/manifest',
    jobId: 'j',
    stage: 'filter.manifest',
    params: { datasetName: 'web', version: 2, topFractionCutoff: 0.21 },
    codeVersion: 'git:bbb',
  });
  for (let i = 0; i < 4; i++) {
    s.startRun({
      id: `j/crawl/shard-${i}`,
      jobId: 'j',
      stage: 'crawl.shard',
      params: { jobId: 'j', datasetName: 'web', version: 1, shardIndex: i, options: CRAWL_OPTIONS },
      codeVersion: 'git:aaa',
    });
    s.linkArtifact(`j/crawl/shard-${i}`, s.getArtifactByUri('file:///in/urls.csv')!.id, 'consumed');
    s.recordArtifactOfRun(`j/crawl/shard-${i}`, 'produced', {
      uri: `file:///d/datasets/web/v1/shards/shard-00000${i}.parquet`,
      kind: 'dataset-shard',
      sha256: hex(10 + i),
      bytes: 3_500_000,
      metadata: { datasetId: 'web@v1' },
    });
    s.finishRun(`j/crawl/shard-${i}`, 'completed');
    s.startRun({
      id: `j/filter/shard-${i}`,
      jobId: 'j',
      stage: 'filter.shard',
      params: { jobId: 'j', datasetName: 'web', version: 2, shardIndex: i, threshold: 0.25 },
      codeVersion: 'git:bbb',
    });
    s.linkArtifact(
      `j/filter/shard-${i}`,
      s.getArtifactByUri(`file:///d/datasets/web/v1/shards/shard-00000${i}.parquet`)!.id,
      'consumed',
    );
    for (let m = 0; m < 6; m++) {
      s.recordArtifactOfRun(`j/filter/shard-${i}`, 'consumed', {
        uri: `file:///models/clip/onnx/part-${m}.onnx#sha256=${hex(40 + m)}`,
        kind: 'model.file',
        sha256: hex(40 + m),
        bytes: 80_000_000,
        metadata: { model: 'clip', dir: '/models/clip', path: `onnx/part-${m}.onnx` },
      });
    }
    const out = s.recordArtifactOfRun(`j/filter/shard-${i}`, 'produced', {
      uri: `file:///d/datasets/web/v2/shards/shard-00000${i}.parquet`,
      kind: 'dataset-shard',
      sha256: hex(20 + i),
      bytes: 3_400_000,
      metadata: { datasetId: 'web@v2' },
    });
    s.finishRun(`j/filter/shard-${i}`, 'completed');
    s.linkArtifact('j/filter/manifest', out.id, 'consumed');
  }
  const m = s.recordArtifactOfRun('j/filter/manifest', 'produced', {
    uri: 'file:///d/datasets/web/v2/manifest.json',
    kind: 'dataset-manifest',
    sha256: hex(30),
    bytes: 2_048,
  });
  s.recordDatasetVersion({
    id: 'web@v2',
    name: 'web',
    version: 2,
    manifestArtifactId: m.id,
    parents: ['web@v1'],
    schemaVersion: 1,
    params: { options: CRAWL_OPTIONS },
    runId: 'j/filter/manifest',
  });
  s.finishRun('j/filter/manifest', 'completed');
}

test('lineage trace prints a short tree: one line per node, shared inputs once, key params only', () => {
  const d = tempDir();
  const s = new LineageStore(join(d.path, 'lineage.db'));
  try {
    record(s);
    const t = traceArtifact(s, resolveArtifactRef(s, 'web@v2')!);
    const text = renderTraceTree(t);
    const lines = text.split('\n');
    assert.equal(lines[0], `dataset-manifest web@v2:manifest.json ${hex(30).slice(0, 12)} 2.00 KiB [dataset web@v2]`);
    assert.match(
      lines[1]!,
      /^└─ <- filter\.manifest \(completed\) filter\/manifest {2}datasetName=web version=2 topFractionCutoff=0\.21$/,
    );
    assert.ok(
      lines.every((l) => l.length <= 140),
      `a line longer than 140 characters:\n${lines.find((l) => l.length > 140)}`,
    );
    assert.ok(!text.includes(hex(40)), 'no full hash');
    assert.ok(!/resizeMode|allowAddresses|keep_ratio/.test(text), 'no crawl option blob');
    assert.match(text, /threshold=0\.25/, 'the filter threshold is a key param');
    assert.match(text, /dataset-shard web@v2:shard-000000\.parquet [0-9a-f]{12} 3\.24 MiB/);
    assert.match(text, /\.\.\. 1 more dataset-shard/, 'four filtered shards: three shown, one counted');
    assert.equal(
      lines.filter((l) => /model\.file clip:onnx\/part-0\.onnx 282828282828 76\.3 MiB/.test(l)).length,
      1,
      'each model file is shown once',
    );
    assert.ok(
      lines.some((l) => /6 model\.file \(seen above\)/.test(l)),
      'later runs name the shared model files in one line',
    );
    assert.ok(lines.length < 45, `${lines.length} lines:\n${text}`);
    assert.match(lines.at(-1)!, /^sources: (in\/urls\.csv|clip:onnx\/part-\d\.onnx)/);
  } finally {
    s.close();
    d.cleanup();
  }
});

test('sizes and params are short', () => {
  assert.equal(humanBytes(999), '999 B');
  assert.equal(humanBytes(80_000_000), '76.3 MiB');
  assert.equal(
    keyParams({ jobId: 'j', datasetName: 'web', clipModelDir: '/m/clip', options: {}, threshold: 0.3, inputs: ['/a'] }),
    'datasetName=web threshold=0.3',
  );
});
