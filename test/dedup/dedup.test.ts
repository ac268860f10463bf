/**
 * dedupWorkflow (the dedup stage on the sharded-stage skeleton) through a real Temporal dev server
 * and the real worker (every workflow and activity) on a temp data root: a 2-shard source version
 * whose URL lists repeat images (same bytes under other URLs, within and across shards) becomes a
 * new version where every later copy is `filtered` with its reason and every other row is unchanged;
 * the manifest and lineage name the source as parent; a rerun resumes the same version. Shards are
 * read back with the project's Parquet reader.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { WORKFLOW_TASK_QUEUE } from '../../infra/constants.js';
import { sha256Hex } from '../../infra/hash.js';
import { LocalStorage } from '../../infra/storage.js';
import { LineageStore } from '../../infra/lineage/store.js';
import { createKilnWorkers } from '../../infra/temporal/worker.js';
import { DatasetLayout } from '../../datasets/shards/layout.js';
import { readDatasetManifest } from '../../datasets/shards/manifest.js';
import { readShardRows } from '../../datasets/shards/reader.js';
import type { ShardRow } from '../../datasets/shards/schema.js';
import { pipelineSpecSchema } from '../../cli/spec/schema.js';
import { pipelineInputFromSpec } from '../../cli/spec/to-input.js';
import type { DedupWorkflowInput, DedupWorkflowResult } from '../../workflows/dedup.js';
import { MODELS } from '../filter/fixtures.js';
import { writeDatasetVersion } from '../helpers/dataset-version.js';
import { tempDir, temporalBinary, testConfig, uniqueId } from '../helpers/env.js';

const image = (name: string) => new Uint8Array(readFileSync(`${MODELS}/images/${name}`));
const A = image('checker_40x56.jpg');
const B = image('gradient_96x64.png');
const C = image('grey_48x48.jpg');
const D = image('circles_30x20.webp');

/** [image, list it came from, status]: two shards of rows from two URL lists. */
const SHARDS: [Uint8Array | null, string, ShardRow['status']?][][] = [
  [
    [A, 'list-a'],
    [B, 'list-a'],
    [null, 'list-a', 'failed_to_download'],
    [A, 'list-b'],
    [C, 'list-b'],
  ],
  [
    [B, 'list-b'],
    [D, 'list-b'],
    [A, 'list-a'],
    [C, 'list-a', 'filtered'],
    [D, 'list-a'],
  ],
];
/** key -> the key of the first copy it repeats (success rows only; a `filtered` source row is carried). */
const EXPECTED_DUPLICATES: Record<string, string> = {
  '000000003': '000000000',
  '000001000': '000000001',
  '000001002': '000000000',
  '000001004': '000001001',
};

function sourceRows(): ShardRow[][] {
  return SHARDS.map((rows, s) =>
    rows.map(([jpg, list, status], r) => ({
      key: `${String(s).padStart(6, '0')}${String(r).padStart(3, '0')}`,
      url: `http://127.0.0.1/${list}/${s}-${r}.img`,
      caption: `row ${s}/${r}`,
      status: status ?? 'success',
      error_message:
        status === 'failed_to_download' ? 'http_404: Not Found' : status === 'filtered' ? 'seen_before: demo@v0' : null,
      width: jpg ? 32 : null,
      height: jpg ? 32 : null,
      original_width: jpg ? 40 : null,
      original_height: jpg ? 40 : null,
      sha256: jpg ? sha256Hex(jpg) : null,
      jpg,
      extra: { list },
    })),
  );
}

describe('dedupWorkflow (Temporal): exact dedup of image sha256 across a version', () => {
  let env: TestWorkflowEnvironment;
  const tmp = tempDir('kiln-dedup-');
  let storage: LocalStorage;
  let lineage: LineageStore;
  let config: ReturnType<typeof testConfig>;

  before(async () => {
    env = await TestWorkflowEnvironment.createLocal({
      server: { executable: { type: 'existing-path', path: temporalBinary() } },
    });
    config = testConfig(`${tmp.path}/data`, env.address);
    storage = new LocalStorage(config.dataRoot);
    lineage = new LineageStore(config.lineagePath);
    await writeDatasetVersion(storage, lineage, 'web', sourceRows(), ['list']);
  });
  after(async () => {
    await env?.teardown();
    lineage?.close();
    tmp.cleanup();
  });

  const run = async (workflowId: string): Promise<DedupWorkflowResult> => {
    const kw = await createKilnWorkers(config, {
      connection: env.nativeConnection,
      deps: { config, storage, lineage, codeVersion: 'test' },
    });
    const input: DedupWorkflowInput = {
      datasetName: 'web',
      sourceVersion: 1,
      shardsPerPage: 1,
      pagesPerRun: 1,
      maxConcurrentShards: 2,
    };
    return kw.runUntil(
      env.client.workflow.execute('dedupWorkflow', { taskQueue: WORKFLOW_TASK_QUEUE, workflowId, args: [input] }),
    ) as Promise<DedupWorkflowResult>;
  };

  it('writes a new version: later copies filtered with their reason, every other row unchanged; lineage; a rerun resumes', async () => {
    const r = await run(uniqueId('dedup'));
    assert.equal(r.datasetId, 'web@v2');
    assert.equal(r.rows, 10);
    assert.equal(r.shards, 2);
    assert.equal(r.duplicates, 4);
    assert.equal(r.shardsWritten, 2);
    assert.equal(r.runs, 2, 'one page per run: continued as new once');
    assert.equal(r.resumed, false);

    const source = sourceRows().flat();
    const out: ShardRow[] = [];
    for (let i = 0; i < 2; i++)
      for await (const row of readShardRows(storage, new DatasetLayout(storage, 'web', 2).shardUri(i))) out.push(row);
    assert.deepEqual(
      out.map((x) => x.key),
      source.map((x) => x.key),
      'every source row once, in order',
    );
    for (const [k, row] of out.entries()) {
      const src = source[k]!;
      const first = EXPECTED_DUPLICATES[row.key];
      if (first) {
        assert.equal(row.status, 'filtered', row.key);
        assert.equal(
          row.error_message,
          `duplicate_sha256: same image bytes as row ${first} (shard ${Number(first.slice(0, 6))})`,
        );
      } else {
        assert.equal(row.status, src.status, row.key);
        assert.equal(row.error_message, src.error_message, row.key);
      }
      assert.equal(row.sha256, src.sha256);
      assert.equal(row.url, src.url);
      assert.deepEqual(row.extra, src.extra);
      assert.ok(
        row.jpg === null ? src.jpg === null : Buffer.from(row.jpg).equals(Buffer.from(src.jpg!)),
        `${row.key}: image bytes kept`,
      );
    }
    const kept = out.filter((x) => x.status === 'success');
    assert.equal(new Set(kept.map((x) => x.sha256)).size, kept.length, 'no two kept rows share image bytes');
    assert.equal(kept.length, 4);

    const manifest = await readDatasetManifest(storage, 'web', 2);
    assert.deepEqual(manifest.parents, ['web@v1']);
    assert.equal(manifest.stage, 'dedup');
    assert.deepEqual(manifest.countsByStatus, { success: 4, failed_to_download: 1, failed_to_resize: 0, filtered: 5 });
    const recorded = lineage.getDatasetVersion('web@v2');
    assert.ok(recorded, 'the dataset version is recorded');
    assert.deepEqual(recorded.parents, ['web@v1']);
    const manifestRun = lineage.getRun(`${r.jobId}/dedup/manifest`)!;
    assert.equal(manifestRun.status, 'completed');
    const consumed = lineage.artifactsOfRun(manifestRun.id, 'consumed').map((a) => a.uri);
    assert.ok(consumed.includes(new DatasetLayout(storage, 'web', 1).manifestUri), 'the source manifest is consumed');
    const shardRun = lineage.getRun(`${r.jobId}/dedup/shard-1`)!;
    assert.deepEqual(
      lineage.artifactsOfRun(shardRun.id, 'consumed').map((a) => a.uri),
      [new DatasetLayout(storage, 'web', 1).shardUri(1)],
    );
    assert.equal(lineage.getJob(r.jobId)?.status, 'completed');

    const again = await run(uniqueId('dedup-again'));
    assert.equal(again.datasetId, 'web@v2', 'the same source resumes the same version');
    assert.equal(again.resumed, true);
    assert.equal(again.shardsSkipped, 2);
    assert.equal(again.manifestSha256, r.manifestSha256);
  });

  it('is a pipeline option: `dedup: true` runs it between crawl and filter', () => {
    const spec = pipelineSpecSchema.parse({ version: 1, name: 'web', sources: [{ path: 'urls.csv' }], dedup: true });
    assert.deepEqual(pipelineInputFromSpec(spec).dedup, {});
    assert.equal(
      pipelineInputFromSpec(pipelineSpecSchema.parse({ version: 1, name: 'web', sources: [{ path: 'urls.csv' }] }))
        .dedup,
      undefined,
    );
  });
});
