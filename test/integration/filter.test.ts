/**
 * The filter stage end to end: filterWorkflow through a real Temporal dev server
 * (TestWorkflowEnvironment.createLocal with the project's temporal binary) and a real Kiln worker
 * (createKilnWorkers: every workflow and activity, both task queues) on a temp data root, with the
 * tiny CLIP and ViT-GPT2 fixtures. Scores and captions are checked against the library run directly
 * on the same rows; the output Parquet is read back with pyarrow; lineage edges are checked.
 * A library-level test kills a shard mid-scoring and checks the retry resumes without duplicates.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, RetryState } from '@temporalio/common';
import { Worker } from '@temporalio/worker';
import { createKilnWorkers, workflowBundle } from '../../infra/temporal/worker.js';
import { createActivities } from '../../activities/index.js';
import { createFilterActivities, type FilterActivityHooks } from '../../activities/filter.js';
import { WORKFLOW_TASK_QUEUE } from '../../infra/constants.js';
import { LocalStorage } from '../../infra/storage.js';
import { sha256Hex } from '../../infra/hash.js';
import { LineageStore } from '../../infra/lineage/store.js';
import type { KilnConfig } from '../../infra/config.js';
import { DatasetLayout } from '../../datasets/shards/layout.js';
import { readDatasetManifest, type DatasetManifest } from '../../datasets/shards/manifest.js';
import { readShardRows } from '../../datasets/shards/reader.js';
import type { ShardRow } from '../../datasets/shards/schema.js';
import { loadCaptioner } from '../../datasets/filter/captioner.js';
import { loadClipScorer } from '../../datasets/filter/clip-scorer.js';
import { hashModelDir } from '../../datasets/filter/model-dir.js';
import { topFractionCutoff } from '../../datasets/filter/selection.js';
import { planFilter } from '../../datasets/filter/stage-plan.js';
import { filterShard, type FilterShardStats } from '../../datasets/filter/stage.js';
import { readShardScores, scoresUri } from '../../datasets/filter/stage-scores.js';
import { FilterModelCache } from '../../datasets/filter/stage-models.js';
import { datasetTopFractionCutoff } from '../../datasets/filter/stage-cutoff.js';
import type { FilterWorkflowInput, FilterWorkflowResult } from '../../workflows/filter.js';
import { GPU_QUEUE, IO_QUEUE } from '../../workflows/queues.js';
import { tempDir, temporalBinary, testConfig, uniqueId } from '../helpers/env.js';
import { CAPTIONER_DIR, CLIP_DIR } from '../filter/fixtures.js';
import { pyarrowRead, sourceRows, writeSourceDataset } from './filter-source.js';

const NAME = 'web';
const MAX_NEW_TOKENS = 8;

interface Expected {
  score: number | null;
  caption: string | null;
  error: string | null;
}

describe('filter stage', () => {
  let env: TestWorkflowEnvironment;
  let config: KilnConfig;
  let storage: LocalStorage;
  let lineage: LineageStore;
  let source: DatasetManifest;
  const tmp = tempDir('kiln-filter-');
  const rows = sourceRows().flat();
  const expected = new Map<string, Expected>();
  let threshold = 0;

  before(async () => {
    env = await TestWorkflowEnvironment.createLocal({
      server: { executable: { type: 'existing-path', path: temporalBinary() } },
    });
    config = testConfig(`${tmp.path}/data`, env.address);
    storage = new LocalStorage(config.dataRoot);
    lineage = new LineageStore(config.lineagePath);
    source = await writeSourceDataset(storage, lineage, NAME);
    // The reference: the library itself on the same success rows, in one call.
    const ok = rows.filter((r) => r.status === 'success');
    const scorer = await loadClipScorer(CLIP_DIR, { device: 'cpu' });
    const captioner = await loadCaptioner(CAPTIONER_DIR, { device: 'cpu', maxNewTokens: MAX_NEW_TOKENS });
    const scored = await scorer.scoreRows(
      ok.map((r) => r.jpg),
      ok.map((r) => r.caption),
    );
    const captions = await captioner.captionRows(ok.map((r) => r.jpg));
    await scorer.dispose();
    await captioner.dispose();
    ok.forEach((r, i) => {
      const s = scored.scores[i] as number;
      expected.set(r.key, {
        score: Number.isFinite(s) ? s : null,
        caption: captions.captions[i] ?? null,
        error: scored.errors[i] ?? captions.errors[i] ?? null,
      });
    });
    // Half way between the 5th and 6th best scores: 5 rows kept, the other scored ones filtered.
    const sorted = [...expected.values()]
      .map((e) => e.score)
      .filter((s): s is number => s !== null)
      .sort((a, b) => b - a);
    assert.equal(sorted.length, 9, 'fixture: 9 scorable rows (1 undecodable, 1 without caption)');
    threshold = ((sorted[4] as number) + (sorted[5] as number)) / 2;
  });

  after(async () => {
    lineage?.close();
    await env?.teardown();
    tmp.cleanup();
  });

  const run = async (workflowId: string, extra: Partial<FilterWorkflowInput> = {}): Promise<FilterWorkflowResult> => {
    const kw = await createKilnWorkers(config, { connection: env.nativeConnection });
    const input: FilterWorkflowInput = {
      datasetName: NAME,
      sourceVersion: 1,
      clipModelDir: CLIP_DIR,
      captionerModelDir: CAPTIONER_DIR,
      threshold,
      maxNewTokens: MAX_NEW_TOKENS,
      batchSize: 4,
      device: 'cpu',
      shardsPerPage: 1,
      pagesPerRun: 1,
      ...extra,
    };
    return kw.runUntil(
      env.client.workflow.execute('filterWorkflow', { taskQueue: WORKFLOW_TASK_QUEUE, workflowId, args: [input] }),
    ) as Promise<FilterWorkflowResult>;
  };

  /** Like run(), with the real activities plus test hooks on the filter activities. */
  const runWithHooks = async (
    workflowId: string,
    hooks: FilterActivityHooks,
    extra: Partial<FilterWorkflowInput>,
  ): Promise<FilterWorkflowResult> => {
    const deps = { config, storage, lineage, codeVersion: 'test' };
    const activities = { ...createActivities(deps), ...createFilterActivities(deps, hooks) };
    const io = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: IO_QUEUE,
      workflowBundle: await workflowBundle(),
      activities,
    });
    const gpu = await Worker.create({
      connection: env.nativeConnection,
      taskQueue: GPU_QUEUE,
      activities,
      maxConcurrentActivityTaskExecutions: 1,
    });
    const input: FilterWorkflowInput = {
      datasetName: NAME,
      sourceVersion: 1,
      clipModelDir: CLIP_DIR,
      batchSize: 2,
      device: 'cpu',
      ...extra,
    };
    const exec = env.client.workflow.execute('filterWorkflow', {
      taskQueue: WORKFLOW_TASK_QUEUE,
      workflowId,
      args: [input],
    }) as Promise<FilterWorkflowResult>;
    return io.runUntil(gpu.runUntil(exec));
  };

  const outputRows = async (version: number): Promise<ShardRow[]> => {
    const m = await readDatasetManifest(storage, NAME, version);
    const layout = new DatasetLayout(storage, NAME, version);
    const out: ShardRow[] = [];
    for (const s of m.shards) for await (const r of readShardRows(storage, layout.resolve(s.path))) out.push(r);
    return out;
  };

  /** Every source row exactly once, in order; failed rows unchanged; scored rows match the library. */
  const assertRows = (out: ShardRow[], decide: (score: number) => string | null) => {
    assert.deepEqual(
      out.map((r) => r.key),
      rows.map((r) => r.key),
    );
    for (const [i, r] of out.entries()) {
      const src = rows[i] as ShardRow;
      assert.deepEqual(
        [r.url, r.caption, r.sha256, r.width, r.extra],
        [src.url, src.caption, src.sha256, src.width, src.extra],
        r.key,
      );
      assert.deepEqual(
        r.jpg === null ? null : Buffer.from(r.jpg),
        src.jpg === null ? null : Buffer.from(src.jpg),
        `${r.key} jpg`,
      );
      if (src.status !== 'success') {
        assert.deepEqual(
          [r.status, r.error_message, r.clip_score, r.caption_generated],
          [src.status, src.error_message, null, null],
          r.key,
        );
        continue;
      }
      const e = expected.get(r.key)!;
      if (e.score === null) {
        assert.equal(r.status, 'filtered', r.key);
        assert.equal(r.clip_score, null);
        assert.match(r.error_message ?? '', /^unscored: /, r.key);
        continue;
      }
      assert.ok(
        Math.abs((r.clip_score as number) - e.score) <= 1e-6,
        `${r.key}: clip_score ${r.clip_score} vs library ${e.score}`,
      );
      const reason = decide(e.score);
      assert.equal(r.status, reason === null ? 'success' : 'filtered', r.key);
      if (reason === null) assert.equal(r.error_message, null);
      else assert.match(r.error_message ?? '', new RegExp(`^${reason}: clip_score `), r.key);
    }
  };

  it('writes a new version: every row once, scores and captions as the library, policy applied, lineage recorded', async () => {
    const sourceShas = source.shards.map((s) => s.sha256);
    const r = await run(uniqueId('filter'));
    assert.equal(r.datasetId, `${NAME}@v2`);
    assert.deepEqual([r.rows, r.kept, r.filtered, r.failed, r.shards, r.executionProvider], [13, 5, 6, 2, 2, 'cpu']);
    const out = await outputRows(2);
    assertRows(out, (s) => (s >= threshold ? null : 'below_threshold'));
    for (const row of out)
      if (row.status !== 'failed_to_download' && row.status !== 'failed_to_resize')
        assert.equal(row.caption_generated, expected.get(row.key)?.caption, row.key);
    assert.equal(
      out.filter((x) => x.caption_generated !== null).length,
      10,
      'a caption for every decodable success row',
    );
    assert.match(
      out.find((x) => x.status === 'filtered' && x.clip_score !== null)?.error_message ?? '',
      new RegExp(`< threshold ${String(Number(threshold.toFixed(6)))}$`),
    );

    // The source version is untouched; the manifest names it as parent with the policy and model hashes.
    const src = await readDatasetManifest(storage, NAME, 1);
    assert.deepEqual(
      src.shards.map((s) => s.sha256),
      sourceShas,
    );
    const m = await readDatasetManifest(storage, NAME, 2);
    assert.deepEqual(m.parents, [`${NAME}@v1`]);
    assert.equal(m.stage, 'filter');
    const params = m.params as {
      threshold: number;
      clip: { files: { path: string; sha256: string }[] };
      captioner: { files: { sha256: string }[] };
      batchSize: number;
      device: string;
      executionProviders: string[];
    };
    assert.equal(params.threshold, threshold);
    assert.deepEqual(
      params.clip.files.map((f) => [f.path, f.sha256]),
      (await hashModelDir(CLIP_DIR)).map((f) => [f.path, f.sha256]),
    );
    assert.deepEqual([params.batchSize, params.device, params.executionProviders], [4, 'cpu', ['cpu']]);
    assert.equal(sha256Hex(readFileSync(fileURLToPath(r.manifestUri))), r.manifestSha256);

    // Per-shard stats: histogram and counts.
    const stats = JSON.parse(
      readFileSync(fileURLToPath(new DatasetLayout(storage, NAME, 2).statsUri(0)), 'utf8'),
    ) as FilterShardStats;
    assert.equal(
      stats.filter.histogram.counts.reduce((a, b) => a + b, 0),
      stats.filter.scored,
    );
    assert.equal(stats.carried, 1);
    assert.equal(stats.countsByStatus.success, stats.filter.kept);

    // pyarrow reads the new columns.
    const py = pyarrowRead(fileURLToPath(new DatasetLayout(storage, NAME, 2).shardUri(0)));
    assert.deepEqual(
      py.schema.filter(([n]) => n === 'clip_score' || n === 'caption_generated'),
      [
        ['clip_score', 'double'],
        ['caption_generated', 'string'],
      ],
    );
    for (const pr of py.rows) {
      const mine = out.find((x) => x.key === pr.key)!;
      assert.deepEqual(
        [pr.clip_score, pr.caption_generated, pr.status, pr.source_id],
        [mine.clip_score, mine.caption_generated, mine.status, mine.extra?.source_id],
      );
    }

    // Lineage: dataset version, shard runs consuming source shard + every model file (sha256), producing shard + stats.
    const dv = lineage.getDatasetVersion(`${NAME}@v2`)!;
    assert.deepEqual(dv.parents, [`${NAME}@v1`]);
    const modelHashes = [...(await hashModelDir(CLIP_DIR)), ...(await hashModelDir(CAPTIONER_DIR))]
      .map((f) => f.sha256)
      .sort();
    const shardRuns = lineage
      .runsOfJob(r.jobId)
      .filter((x) => x.stage === 'filter.shard')
      .sort((a, b) => a.id.localeCompare(b.id));
    assert.deepEqual(
      shardRuns.map((x) => [x.id, x.status]),
      [
        [`${r.jobId}/filter/shard-0`, 'completed'],
        [`${r.jobId}/filter/shard-1`, 'completed'],
      ],
    );
    for (const [i, run] of shardRuns.entries()) {
      const consumed = lineage.artifactsOfRun(run.id, 'consumed');
      assert.deepEqual(
        consumed
          .filter((a) => a.kind === 'model.file')
          .map((a) => a.sha256)
          .sort(),
        modelHashes,
      );
      assert.deepEqual(
        consumed.filter((a) => a.kind === 'dataset-shard').map((a) => a.sha256),
        [sourceShas[i]],
      );
      const produced = lineage.artifactsOfRun(run.id, 'produced');
      assert.deepEqual(
        produced.filter((a) => a.kind === 'dataset-shard').map((a) => a.sha256),
        [m.shards[i]?.sha256],
      );
      assert.equal(produced.filter((a) => a.kind === 'shard-stats').length, 1);
      assert.equal(run.environment.executionProvider, 'cpu');
      assert.equal(typeof run.environment.ortVersion, 'string');
    }
    // Models loaded once per worker process: the second shard reused the first shard's sessions.
    assert.deepEqual(
      shardRuns.map((x) => (x.result as { modelsReused: boolean }).modelsReused),
      [false, true],
    );
  });

  it('a rerun with the same input resumes the same version: finished shards skipped, identical hashes', async () => {
    const before1 = await readDatasetManifest(storage, NAME, 2);
    const r = await run(uniqueId('filter-rerun'));
    assert.deepEqual([r.version, r.resumed, r.shardsSkipped, r.shardsFiltered, r.rowsScored], [2, true, 2, 0, 0]);
    const after1 = await readDatasetManifest(storage, NAME, 2);
    assert.deepEqual(after1, before1);
    assert.equal(r.manifestSha256, sha256Hex(readFileSync(fileURLToPath(r.manifestUri))));
  });

  it('a missing model directory fails fast with the MissingFileError message', async () => {
    const missing = `${tmp.path}/no-such-clip`;
    await assert.rejects(run(uniqueId('filter-missing'), { clipModelDir: missing }), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError);
      assert.ok(err.cause instanceof ActivityFailure);
      assert.equal(err.cause.retryState, RetryState.NON_RETRYABLE_FAILURE, 'not retried');
      const cause = err.cause?.cause as { type?: string; message?: string; nonRetryable?: boolean } | undefined;
      assert.equal(cause?.type, 'MissingFileError');
      assert.match(
        cause?.message ?? '',
        new RegExp(`clip model directory ${missing} does not exist \\(expected files: config.json`),
      );
      return true;
    });
  });

  it('keep-top-fraction uses one dataset-wide cutoff (DataComp), computed after scoring every shard', async () => {
    const r = await run(uniqueId('filter-top'), {
      threshold: undefined,
      keepTopFraction: 0.5,
      captionerModelDir: null,
    });
    assert.equal(r.version, 3);
    const scores = [...expected.values()].map((e) => e.score).filter((s): s is number => s !== null);
    const cutoff = topFractionCutoff(scores, 0.5) as number;
    assert.ok(Math.abs((r.topFractionCutoff as number) - cutoff) <= 1e-6, `cutoff ${r.topFractionCutoff} vs ${cutoff}`);
    assert.equal(r.kept, scores.filter((s) => s >= cutoff).length);
    assert.equal(r.kept, 5); // floor(9 * 0.5) = 4 -> the 5th best score is the cutoff
    const out = await outputRows(3);
    assertRows(out, (s) => (s >= cutoff ? null : 'below_top_fraction'));
    assert.ok(
      out.every((x) => x.caption_generated === null),
      'no captioner: no generated captions',
    );
    assert.equal(lineage.runsOfJob(r.jobId).filter((x) => x.stage === 'filter.score').length, 2);
    const m = await readDatasetManifest(storage, NAME, 3);
    assert.deepEqual((m.params as { threshold: unknown; keepTopFraction: number }).threshold, null);
    // The streaming exact cutoff equals sorting everything.
    const many = Array.from({ length: 5000 }, (_, i) => Math.sin(i * 12.9898) * 0.999);
    for (const f of [0.001, 0.3, 0.5, 1]) {
      const got = await datasetTopFractionCutoff(async function* () {
        yield many.slice(0, 2500);
        yield [null, Number.NaN];
        yield many.slice(2500);
      }, f);
      assert.equal(got.cutoff, topFractionCutoff(many, f), `fraction ${f}`);
    }
  });

  it('a shard killed mid-scoring resumes from its checkpoint without scoring or writing a row twice', async () => {
    const { plan } = await planFilter(
      storage,
      {
        datasetName: NAME,
        sourceVersion: 1,
        clipModelDir: CLIP_DIR,
        captionerModelDir: CAPTIONER_DIR,
        threshold: 0,
        maxNewTokens: MAX_NEW_TOKENS,
        batchSize: 2,
        device: 'cpu',
      },
      lineage.latestDatasetVersionNumber(NAME),
    );
    const cache = new FilterModelCache();
    const models = async () => (await cache.acquire(plan)).models;
    const spec = { plan, shardIndex: 0 };
    await assert.rejects(
      filterShard(storage, spec, {
        models,
        checkpointIntervalMs: 0,
        onProgress: (p) => {
          if (p.phase === 'score' && p.rowsDone >= 2) throw new Error('worker killed');
        },
      }),
      /worker killed/,
    );
    const layout = new DatasetLayout(storage, NAME, plan.version);
    assert.equal(await storage.exists(layout.shardUri(0)), false, 'nothing visible after the kill');
    const src = plan.source.shards[0]!;
    const partial = await readShardScores(storage, scoresUri(storage, layout, 0), {
      fingerprint: plan.fingerprint,
      sourceSha256: src.sha256,
      rows: src.rows,
    });
    assert.ok(
      partial && !partial.scores.complete && partial.scores.rowsDone >= 2 && partial.scores.rowsDone < src.rows,
    );
    const successBefore = rows.slice(0, partial.scores.rowsDone).filter((x) => x.status === 'success').length;

    const out = await filterShard(storage, spec, { models, checkpointIntervalMs: 0 });
    assert.equal(out.resumedFromRow, partial.scores.rowsDone);
    assert.equal(out.rowsScored, rows.slice(0, src.rows).filter((x) => x.status === 'success').length - successBefore);
    assert.equal(cache.loads, 2, 'CLIP + captioner loaded once for both attempts');
    const written: ShardRow[] = [];
    for await (const row of readShardRows(storage, layout.shardUri(0))) written.push(row);
    assert.deepEqual(
      written.map((x) => x.key),
      rows.slice(0, src.rows).map((x) => x.key),
    );
    for (const w of written) {
      const e = expected.get(w.key);
      if (e?.score != null) assert.ok(Math.abs((w.clip_score as number) - e.score) <= 1e-6, w.key);
    }
    const again = await filterShard(storage, spec, { models, checkpointIntervalMs: 0 });
    assert.deepEqual([again.skipped, again.shard.sha256], [true, out.shard.sha256]);
    await cache.dispose();
    // A model directory whose files no longer match the plan's hashes is refused.
    const tampered = {
      ...plan,
      captioner: null,
      clip: { ...plan.clip, files: plan.clip.files.map((f, k) => (k === 0 ? { ...f, sha256: '0'.repeat(64) } : f)) },
    };
    await assert.rejects(
      new FilterModelCache().acquire(tampered),
      (e: Error & { code?: string }) =>
        e.code === 'KILN_MODEL_CHANGED' && /changed since the filter run was planned/.test(e.message),
    );
  });

  it('a shard attempt that dies mid-scoring is retried by Temporal and resumes from its checkpoint', async () => {
    const attempts: number[] = [];
    const r = await runWithHooks(
      uniqueId('filter-retry'),
      {
        checkpointIntervalMs: 0,
        onShardProgress: (shard, p, attempt) => {
          if (shard !== 0 || p.phase !== 'score') return;
          attempts.push(attempt);
          if (attempt === 1 && p.rowsDone >= 2) throw new Error('worker died');
        },
      },
      { threshold: 0.1 },
    );
    assert.deepEqual([r.rows, r.failed], [13, 2]);
    assert.deepEqual([...new Set(attempts)], [1, 2]);
    // The workflow code replays its own history deterministically.
    const history = await env.client.workflow.getHandle(r.jobId).fetchHistory();
    await Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, history, r.jobId);
    const run0 = lineage.getRun(`${r.jobId}/filter/shard-0`)!;
    assert.equal(run0.status, 'completed');
    const res = run0.result as { resumedFromRow: number; rowsScored: number };
    assert.deepEqual(
      [res.resumedFromRow, res.rowsScored],
      [2, 4],
      'attempt 2 scored only the 4 success rows after the checkpoint',
    );
    assertRows(await outputRows(r.version), (s) => (s >= 0.1 ? null : 'below_threshold'));
  });
});
