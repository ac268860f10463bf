/**
 * Audit reads on one backend (called by backends.test.ts for SQLite and PostgreSQL): `kiln lineage
 * trace` from a checkpoint back to its sources, and the OpenLineage export.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LineageStore } from '../../infra/lineage/store.js';
import { traceArtifact, resolveArtifactRef } from '../../infra/lineage/trace.js';
import { exportOpenLineage, uuidFromId, OPENLINEAGE_SCHEMA_URL } from '../../infra/lineage/openlineage.js';
import { withStore, type LineageBackend } from './backend.js';

const sha = (c: string) => c.repeat(64);
/** An artifact record whose sha256 is the digit `c` 64 times. */
const file = (uri: string, kind: string, c: string, bytes: number) => ({ uri, kind, sha256: sha(c), bytes });

/** crawl (urls.csv -> shard + manifest v1) -> filter (v1 + clip model -> v2) -> train (v2 -> checkpoint) */
function pipeline(s: LineageStore): void {
  s.startJob({ id: 'p', kind: 'pipeline', workflowId: 'p', params: {}, codeVersion: 'git:aaa' });
  s.startRun({ id: 'p/crawl', jobId: 'p', stage: 'crawl.shard', params: { image_size: 64 }, codeVersion: 'git:aaa' });
  s.recordArtifactOfRun('p/crawl', 'consumed', file('file:///in/urls.csv', 'input.url_list', '1', 100));
  s.recordArtifactOfRun('p/crawl', 'produced', file('file:///d/web/v1/shard-0.parquet', 'shard', '2', 2000));
  const m1 = s.recordArtifactOfRun('p/crawl', 'produced', file('file:///d/web/v1/manifest.json', 'manifest', '3', 300));
  s.recordDatasetVersion({
    id: 'web@1',
    name: 'web',
    version: 1,
    manifestArtifactId: m1.id,
    parents: [],
    schemaVersion: 1,
    params: {},
    runId: 'p/crawl',
  });
  s.finishRun('p/crawl', 'completed');
  s.startRun({
    id: 'p/filter',
    jobId: 'p',
    stage: 'filter',
    params: { threshold: 0.25 },
    environment: { executionProvider: 'cpu' },
    codeVersion: 'git:bbb',
  });
  s.linkArtifact('p/filter', m1.id, 'consumed');
  s.recordArtifactOfRun(
    'p/filter',
    'consumed',
    file('file:///models/clip/onnx/vision_model.onnx', 'model.file', '4', 5),
  );
  const m2 = s.recordArtifactOfRun(
    'p/filter',
    'produced',
    file('file:///d/web/v2/manifest.json', 'manifest', '5', 300),
  );
  s.recordDatasetVersion({
    id: 'web@2',
    name: 'web',
    version: 2,
    manifestArtifactId: m2.id,
    parents: ['web@1'],
    schemaVersion: 1,
    params: { threshold: 0.25 },
    runId: 'p/filter',
  });
  s.finishRun('p/filter', 'completed');
  s.startRun({
    id: 'p/train',
    jobId: 'p',
    stage: 'train.chunk',
    params: { lr: 1e-4 },
    environment: { backend: 'wasm' },
    codeVersion: 'git:bbb',
  });
  s.linkArtifact('p/train', m2.id, 'consumed');
  s.recordArtifactOfRun(
    'p/train',
    'produced',
    file('file:///d/runs/r1/checkpoints/step-10/model.safetensors', 'checkpoint.model', '6', 999),
  );
  s.finishRun('p/train', 'failed', undefined, 'NaN loss');
}

export function auditSuite(b: LineageBackend): void {
  test('trace from a checkpoint reaches the filter threshold, the model file, both dataset versions and the source URL list', () =>
    withStore(b, async (s) => {
      pipeline(s);
      const ckpt = resolveArtifactRef(s, 'file:///d/runs/r1/checkpoints/step-10/model.safetensors')!;
      const t = traceArtifact(s, ckpt);
      assert.deepEqual(t.runs.map((r) => r.id).sort(), ['p/crawl', 'p/filter', 'p/train']);
      assert.deepEqual(t.datasetVersions.map((v) => v.id).sort(), ['web@1', 'web@2']);
      assert.deepEqual(t.sources.map((a) => a.uri).sort(), [
        'file:///in/urls.csv',
        'file:///models/clip/onnx/vision_model.onnx',
      ]);
      assert.deepEqual(t.codeVersions.sort(), ['git:aaa', 'git:bbb']);
      assert.deepEqual(t.runs.find((r) => r.id === 'p/filter')?.params, { threshold: 0.25 });
      assert.deepEqual(t.datasetVersions.find((v) => v.id === 'web@2')?.params, { threshold: 0.25 });
      // other reference forms
      assert.equal(resolveArtifactRef(s, 'web@1')?.uri, 'file:///d/web/v1/manifest.json');
      assert.equal(resolveArtifactRef(s, sha('2'))?.uri, 'file:///d/web/v1/shard-0.parquet');
      assert.equal(resolveArtifactRef(s, 'nope'), undefined);
    }));

  test('OpenLineage export: START + terminal RunEvent per run, spec 2-0-2 shape, stable UUIDs, inputs/outputs with hashes', () =>
    withStore(b, async (s) => {
      pipeline(s);
      const events = exportOpenLineage(s);
      assert.equal(events.length, 6);
      assert.deepEqual(
        events.map((e) => e.eventType),
        ['START', 'COMPLETE', 'START', 'COMPLETE', 'START', 'FAIL'],
      );
      const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
      for (const e of events) {
        assert.equal(e.schemaURL, OPENLINEAGE_SCHEMA_URL);
        assert.match(e.run.runId, uuid);
        assert.ok(!Number.isNaN(Date.parse(e.eventTime)));
        assert.equal(typeof e.producer, 'string');
        assert.equal(e.job.namespace, 'kiln');
        for (const facet of Object.values(e.run.facets) as { _producer: string; _schemaURL: string }[]) {
          assert.equal(typeof facet._producer, 'string');
          assert.equal(typeof facet._schemaURL, 'string');
        }
      }
      assert.equal(uuidFromId('p/filter'), events[2]!.run.runId);
      const filterDone = events[3]!;
      assert.deepEqual(filterDone.inputs.map((i) => i.name).sort(), [
        '/d/web/v1/manifest.json',
        '/models/clip/onnx/vision_model.onnx',
      ]);
      assert.deepEqual(
        filterDone.outputs.map((o) => (o.facets.kiln_artifact as { sha256: string }).sha256),
        [sha('5')],
      );
      assert.deepEqual((filterDone.run.facets.kiln_run as { params: unknown }).params, { threshold: 0.25 });
      assert.equal((filterDone.run.facets.parent as { job: { name: string } }).job.name, 'p');
    }));
}
