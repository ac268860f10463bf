/**
 * CLIP reranking reached by a user (issue 18): a pipeline spec with `caption_candidates: 3` is mapped
 * (cli/spec/to-input.ts) to filterWorkflow's input and run through a real Temporal dev server and Kiln
 * worker on the tiny BLIP and CLIP fixtures. The output shard, read back by pyarrow, holds each row's
 * 3 candidates (= transformers' generate(num_beams=3, num_return_sequences=3), fixtures/models/
 * blip-candidates.json) and their CLIP scores, and caption_generated is the best-scored candidate; a
 * sampled spec (caption_candidates_from: sampling, seed, temperature) reaches the plan and the shard.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { createKilnWorkers } from '../../infra/temporal/worker.js';
import { WORKFLOW_TASK_QUEUE } from '../../infra/constants.js';
import { LocalStorage } from '../../infra/storage.js';
import { LineageStore } from '../../infra/lineage/store.js';
import { DatasetLayout } from '../../datasets/shards/layout.js';
import { readDatasetManifest } from '../../datasets/shards/manifest.js';
import { parseSpecText } from '../../cli/spec/load.js';
import { pipelineInputFromSpec } from '../../cli/spec/to-input.js';
import type { FilterWorkflowInput, FilterWorkflowResult } from '../../workflows/filter.js';
import { tempDir, temporalBinary, testConfig } from '../helpers/env.js';
import { CLIP_DIR, MODELS } from '../filter/fixtures.js';
import { pyarrowRead, SOURCE_ROWS, sourceRows, writeSourceDataset } from './filter-source.js';

const NAME = 'web';
const BLIP_DIR = `${MODELS}/blip-tiny`;
const tmp = tempDir('kiln-filter-rerank-wf-');
let env: TestWorkflowEnvironment;

interface CandidatesReference {
  images: string[];
  runs: { name: string; candidates: string[][] }[];
}
const REFERENCE = JSON.parse(readFileSync(`${MODELS}/blip-candidates.json`, 'utf8')) as CandidatesReference;

before(async () => {
  env = await TestWorkflowEnvironment.createLocal({
    server: { executable: { type: 'existing-path', path: temporalBinary() } },
  });
});
after(async () => {
  await env?.teardown();
  tmp.cleanup();
});

const argmax = (xs: readonly number[]) => xs.reduce((best, x, i) => (x > (xs[best] as number) ? i : best), 0);

/**
 * Maps a spec whose `filter:` section is the shared settings plus `filterLines` to filterWorkflow's
 * input, runs it on a fresh data root under `dir` and returns the mapped input and version 2 (the
 * manifest and every shard as pyarrow reads it).
 */
async function runFilterSpec(dir: string, workflowId: string, filterLines: string[]) {
  const spec = parseSpecText(
    [
      'version: 1',
      `name: ${NAME}`,
      'sources:',
      '  - path: urls.csv',
      'filter:',
      `  clip_model: ${CLIP_DIR}`,
      `  captioner_model: ${BLIP_DIR}`,
      '  threshold: -1',
      '  threshold_caption: generated',
      '  max_new_tokens: 6',
      '  device: cpu',
      ...filterLines.map((line) => `  ${line}`),
      '',
    ].join('\n'),
    'spec.yaml',
  );
  const filter = pipelineInputFromSpec(spec).filter!;
  const config = testConfig(`${tmp.path}/${dir}`, env.address);
  const storage = new LocalStorage(config.dataRoot);
  const lineage = new LineageStore(config.lineagePath);
  try {
    await writeSourceDataset(storage, lineage, NAME);
    const input: FilterWorkflowInput = { ...filter, datasetName: NAME, sourceVersion: 1 };
    const kw = await createKilnWorkers(config, { connection: env.nativeConnection });
    const result = (await kw.runUntil(
      env.client.workflow.execute('filterWorkflow', { taskQueue: WORKFLOW_TASK_QUEUE, workflowId, args: [input] }),
    )) as FilterWorkflowResult;
    assert.equal(result.version, 2);
    const manifest = await readDatasetManifest(storage, NAME, 2);
    const layout = new DatasetLayout(storage, NAME, 2);
    const shards = manifest.shards.map((_, s) => pyarrowRead(fileURLToPath(layout.shardUri(s))));
    return { filter, manifest, shards };
  } finally {
    lineage.close();
  }
}

void test('a spec with caption_candidates: 3 runs through filterWorkflow: candidates, CLIP scores and the argmax kept in the shard', async () => {
  const { filter, manifest, shards } = await runFilterSpec('data', 'filter-rerank-spec', [
    'caption_prompt: a picture of',
    'num_beams: 3',
    'caption_candidates: 3',
    'batch_size: 3',
  ]);
  assert.deepEqual(filter.captionCandidates, { count: 3, select: 'clip' });
  const params = manifest.params as { captioner: { options: { numBeams: number; candidates: unknown } } };
  assert.equal(params.captioner.options.numBeams, 3);
  assert.deepEqual(params.captioner.options.candidates, { count: 3, select: 'clip', from: 'beams' });

  const ref = REFERENCE.runs.find((r) => r.name === 'beams3_prompt')!;
  const refByImage = new Map(REFERENCE.images.map((image, i) => [image, ref.candidates[i]!]));
  const imageOf = new Map(
    sourceRows()
      .flat()
      .map((r, i) => [r.key, SOURCE_ROWS.flat()[i]![0]]),
  );
  let reranked = 0;
  let changed = 0;
  for (const py of shards) {
    const schema = new Map(py.schema);
    assert.equal(schema.get('caption_candidates'), 'list<item: string not null>');
    assert.equal(schema.get('caption_candidate_scores'), 'list<item: double not null>');
    for (const row of py.rows) {
      const cands = row['caption_candidates'] as string[] | null;
      const scores = row['caption_candidate_scores'] as number[] | null;
      if (cands === null) {
        assert.equal(scores, null, `row ${String(row['key'])}: no candidates, no scores`);
        continue;
      }
      reranked++;
      const image = imageOf.get(String(row['key']))!;
      assert.deepEqual(cands, refByImage.get(image), `row ${String(row['key'])}: candidates = transformers'`);
      assert.equal(scores!.length, 3);
      const k = argmax(scores!);
      assert.equal(row['caption_generated'], cands[k], `row ${String(row['key'])}: caption_generated is the argmax`);
      assert.equal(row['clip_score'], scores![k], `row ${String(row['key'])}: clip_score is the kept candidate's`);
      if (k !== 0) changed++;
    }
  }
  // 10 decodable success rows (the one without a caption included); the undecodable image and the failed rows have none.
  assert.equal(reranked, 10);
  assert.ok(changed > 0, 'reranking kept a candidate other than the best beam for some image');
});

void test('caption_candidates_from: sampling reaches the plan: 2 seeded samples per image, scored, the argmax kept', async () => {
  const { manifest, shards } = await runFilterSpec('sampled', 'filter-rerank-sampled', [
    'caption_candidates: 2',
    'caption_candidates_from: sampling',
    'caption_candidates_seed: 7',
    'caption_candidates_temperature: 1.5',
    'batch_size: 4',
  ]);
  const params = manifest.params as { captioner: { options: { candidates: unknown } } };
  assert.deepEqual(params.captioner.options.candidates, {
    count: 2,
    select: 'clip',
    from: 'sampling',
    seed: 7,
    temperature: 1.5,
    topP: 1,
  });
  let reranked = 0;
  for (const py of shards) {
    for (const row of py.rows) {
      const cands = row['caption_candidates'] as string[] | null;
      if (cands === null) continue;
      const scores = row['caption_candidate_scores'] as number[];
      assert.equal(cands.length, 2);
      assert.equal(scores.length, 2);
      assert.equal(row['caption_generated'], cands[argmax(scores)], `row ${String(row['key'])}: the argmax kept`);
      reranked++;
    }
  }
  assert.equal(reranked, 10);
});
