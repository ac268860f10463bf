/**
 * CLIP reranking of candidate captions through the filter stage (library level, no Temporal), on the
 * tiny BLIP and CLIP fixtures: N candidates per image (beam search's N best), each scored with the
 * filter's CLIP, the best kept as `caption_generated`, candidates and scores stored in the shard and
 * read back by pyarrow; the scores against transformers' CLIPModel on the same pairs; reruns identical;
 * off by default; bad options refused before anything is written.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../infra/errors.js';
import { LocalStorage } from '../../infra/storage.js';
import { LineageStore } from '../../infra/lineage/store.js';
import { DatasetLayout } from '../../datasets/shards/layout.js';
import { loadCaptioner } from '../../datasets/filter/captioner.js';
import { planFilter, type FilterPlanSpec } from '../../datasets/filter/stage-plan.js';
import { filterShard } from '../../datasets/filter/stage.js';
import { readShardScores, scoresUri } from '../../datasets/filter/stage-scores.js';
import { sampleToken } from '../../datasets/filter/sampling.js';
import { mulberry32 } from '../../infra/prng.js';
import { FilterModelCache } from '../../datasets/filter/stage-models.js';
import { buildFilterManifest } from '../../datasets/filter/stage-manifest.js';
import { tempDir } from '../helpers/env.js';
import { pyarrowRead, SOURCE_ROWS, sourceRows, writeSourceDataset } from '../integration/filter-source.js';
import { CLIP_DIR, MODELS, ROOT, referenceImages } from './fixtures.js';

const BLIP_DIR = `${MODELS}/blip-tiny`;
const MODELS_PY = process.env['KILN_MODELS_PYTHON'] ?? join(ROOT, '.venv-models', 'bin', 'python');
/** Kiln's ONNX CLIP vs transformers' PyTorch CLIP on the same pair (the fixtures agree to ~1e-6). */
const SCORE_TOL = 1e-5;
const tmp = tempDir('kiln-filter-rerank-');

/** transformers' generate(num_beams=k, num_return_sequences=k) candidates (scripts/fixtures/make_candidates_reference.py). */
interface CandidatesReference {
  images: string[];
  runs: {
    name: string;
    num_beams: number;
    max_new_tokens: number;
    prompt: string | null;
    candidates: string[][];
    stable_under_noise: boolean;
  }[];
}
const CANDIDATES = JSON.parse(readFileSync(`${MODELS}/blip-candidates.json`, 'utf8')) as CandidatesReference;
after(() => tmp.cleanup());

const SPEC: FilterPlanSpec = {
  datasetName: 'web',
  sourceVersion: 1,
  clipModelDir: CLIP_DIR,
  captionerModelDir: BLIP_DIR,
  threshold: -1,
  captionSource: 'generated',
  maxNewTokens: 6,
  captionPrompt: 'a picture of',
  batchSize: 3,
  device: 'cpu',
};

type Row = Record<string, unknown> & {
  key: string;
  status: string;
  clip_score: number | null;
  caption_generated: string | null;
  caption_candidates?: string[] | null;
  caption_candidate_scores?: number[] | null;
};

/**
 * Plan and filter every shard of a fresh `web@v1` under `root`; the shards as pyarrow reads them. With
 * `killAt`, shard 0's first attempt dies once that many rows are scored (checkpointed every batch) and a
 * second attempt resumes from its scores sidecar; `resumed` holds what the sidecar had then.
 */
async function filterAll(root: string, spec: FilterPlanSpec, killAt?: number) {
  const storage = new LocalStorage(root);
  const lineage = new LineageStore(`${root}/lineage.db`);
  const cache = new FilterModelCache();
  try {
    await writeSourceDataset(storage, lineage, 'web');
    const { plan } = await planFilter(storage, spec, 1);
    const shas: string[] = [];
    let resumed: { rowsDone: number; candidates: number; scores: number } | null = null;
    if (killAt !== undefined) {
      await assert.rejects(
        filterShard(
          storage,
          { plan, shardIndex: 0 },
          {
            models: async () => (await cache.acquire(plan)).models,
            checkpointIntervalMs: 0,
            onProgress: (p) => {
              if (p.phase === 'score' && p.rowsDone >= killAt) throw new Error('worker killed');
            },
          },
        ),
        /worker killed/,
      );
      const src = plan.source.shards[0]!;
      const layout = new DatasetLayout(storage, 'web', plan.version);
      const partial = (await readShardScores(storage, scoresUri(storage, layout, 0), {
        fingerprint: plan.fingerprint,
        sourceSha256: src.sha256,
        rows: src.rows,
      }))!.scores;
      resumed = {
        rowsDone: partial.rowsDone,
        candidates: partial.captionCandidates?.filter((c) => c !== null).length ?? -1,
        scores: partial.captionCandidateScores?.filter((c) => c !== null).length ?? -1,
      };
    }
    for (const shard of plan.source.shards) {
      const out = await filterShard(
        storage,
        { plan, shardIndex: shard.index },
        { models: async () => (await cache.acquire(plan)).models, checkpointIntervalMs: 0 },
      );
      shas.push(out.shard.sha256);
    }
    const layout = new DatasetLayout(storage, 'web', plan.version);
    const shards = plan.source.shards.map((s) => pyarrowRead(storage.localPath(layout.shardUri(s.index))));
    const { manifest } = await buildFilterManifest(storage, plan, null);
    return { plan, shas, shards, manifest, resumed };
  } finally {
    await cache.dispose();
    lineage.close();
  }
}

function argmax(xs: readonly number[]): number {
  return xs.reduce((best, x, i) => (x > (xs[best] as number) ? i : best), 0);
}

void test("the captioner's candidates are transformers' generate(num_return_sequences=k), best first, batched and per image", async () => {
  const images = referenceImages();
  for (const run of CANDIDATES.runs) {
    assert.ok(run.stable_under_noise, `${run.name}: the reference is not stable under 1e-4 logit noise`);
    const cap = await loadCaptioner(BLIP_DIR, {
      device: 'cpu',
      maxNewTokens: run.max_new_tokens,
      numBeams: run.num_beams,
      candidates: run.num_beams,
      ...(run.prompt ? { prompt: run.prompt } : {}),
    });
    try {
      assert.deepEqual((await cap.captionCandidateRows(images)).candidates, run.candidates, `${run.name} batched`);
      for (const [i, image] of images.entries())
        assert.deepEqual(
          (await cap.captionCandidateRows([image])).candidates,
          [run.candidates[i]],
          `${run.name} image ${i}`,
        );
    } finally {
      await cap.dispose();
    }
  }
});

void test('captionCandidates 3: beam candidates scored with CLIP (= transformers), the best kept, stored, rerun identical', async (t) => {
  const spec = { ...SPEC, captionCandidates: { count: 3 } };
  const run = await filterAll(`${tmp.path}/a`, spec);
  assert.deepEqual(run.plan.captioner?.options, {
    maxNewTokens: 6,
    numBeams: 3,
    prompt: 'a picture of',
    candidates: { count: 3, select: 'clip', from: 'beams' },
  });
  const params = run.manifest.params as { captioner: { options: { candidates: unknown } } };
  assert.deepEqual(params.captioner.options.candidates, {
    count: 3,
    select: 'clip',
    from: 'beams',
  });

  const src = sourceRows().flat();
  const rows = run.shards.flatMap((s) => s.rows) as Row[];
  assert.equal(rows.length, src.length);
  const schema = new Map(run.shards[0]!.schema);
  assert.equal(schema.get('caption_candidates'), 'list<item: string not null>');
  assert.equal(schema.get('caption_candidate_scores'), 'list<item: double not null>');

  // The candidates are the captioner's 3 best beams, in beam order.
  const cap = await loadCaptioner(BLIP_DIR, {
    device: 'cpu',
    maxNewTokens: 6,
    numBeams: 3,
    prompt: 'a picture of',
    candidates: 3,
  });
  const success = src.filter((r) => r.status === 'success');
  const direct = await cap.captionCandidateRows(success.map((r) => r.jpg));
  const best = await cap.captionRows(success.map((r) => r.jpg));
  await cap.dispose();

  // Same settings as the reference run beams3_prompt (3 beams, 6 new tokens, the prompt).
  const refRun = CANDIDATES.runs.find((r) => r.name === 'beams3_prompt')!;
  const refCandidates = new Map(CANDIDATES.images.map((name, i) => [name, refRun.candidates[i]!]));
  const imageOf = new Map(
    sourceRows()
      .flat()
      .map((r, i) => [r.key, SOURCE_ROWS.flat()[i]![0]]),
  );
  const items: { image: string; texts: string[]; key: string }[] = [];
  const imgDir = `${tmp.path}/images`;
  mkdirSync(imgDir, { recursive: true });
  let scored = 0;
  success.forEach((s, i) => {
    const row = rows.find((r) => r.key === s.key)!;
    const cands = direct.candidates[i] ?? null;
    if (cands === null) {
      // The undecodable image: no candidates, no score, the reason kept.
      assert.equal(row.caption_candidates, null);
      assert.equal(row.caption_candidate_scores, null);
      assert.equal(row.status, 'filtered');
      assert.match(String(row['error_message']), /^unscored: /);
      return;
    }
    scored++;
    assert.deepEqual(row.caption_candidates, cands, `row ${s.key}: candidates`);
    assert.deepEqual(cands, refCandidates.get(imageOf.get(s.key)!), `row ${s.key}: candidates = transformers'`);
    assert.equal(cands[0], best.captions[i], 'the first candidate is the best beam (what captionRows returns)');
    const scores = row.caption_candidate_scores!;
    assert.equal(scores.length, 3);
    const k = argmax(scores);
    assert.equal(row.caption_generated, cands[k], `row ${s.key}: the kept caption is the argmax`);
    assert.equal(row.clip_score, scores[k], `row ${s.key}: clip_score is the kept candidate's score`);
    const image = join(imgDir, `${s.key}.bin`);
    writeFileSync(image, s.jpg!);
    items.push({ image, texts: cands, key: s.key });
  });
  assert.ok(scored >= 8, `${scored} rows with candidates`);
  // At least one image where reranking changed the caption, and candidates that differ.
  assert.ok(rows.some((r) => r.caption_candidates && new Set(r.caption_candidates).size > 1));
  assert.ok(
    rows.some((r) => r.caption_candidates && r.caption_generated !== r.caption_candidates[0]),
    'reranking picked a caption other than the best beam for at least one image',
  );
  // Rows that were not success in the source carry no candidates.
  for (const r of rows.filter((x) => src.find((s) => s.key === x.key)!.status !== 'success'))
    assert.equal(r.caption_candidates, null);

  // Independent CLIP: transformers' CLIPModel (PyTorch) on the same images and texts.
  const ref = spawnSync(MODELS_PY, [join(ROOT, 'test/filter/clip_pair_scores.py')], {
    input: JSON.stringify({ clip_dir: CLIP_DIR, items }),
    encoding: 'utf8',
  });
  assert.equal(ref.status, 0, `clip_pair_scores.py failed: ${ref.stderr}`);
  const want = (JSON.parse(ref.stdout) as { scores: number[][] }).scores;
  let worst = 0;
  items.forEach((it, i) => {
    const got = rows.find((r) => r.key === it.key)!.caption_candidate_scores!;
    got.forEach((g, c) => (worst = Math.max(worst, Math.abs(g - want[i]![c]!))));
  });
  t.diagnostic(`candidate scores vs transformers CLIPModel: max |diff| ${worst} over ${items.length * 3} pairs`);
  assert.ok(worst <= SCORE_TOL, `candidate scores vs transformers: max |diff| ${worst} > ${SCORE_TOL}`);

  // A rerun from scratch (another data root) whose first attempt at shard 0 is killed after 2 scored rows
  // and resumed from the checkpointed sidecar writes the same rows. (libvips's message for the undecodable
  // image repeats a varying number of lines, so error messages are compared up to their detail.)
  const again = await filterAll(`${tmp.path}/b`, spec, 2);
  assert.ok(again.resumed && again.resumed.rowsDone >= 2, JSON.stringify(again.resumed));
  assert.ok(again.resumed.candidates >= 2 && again.resumed.scores === again.resumed.candidates);
  const comparable = (shards: typeof run.shards) =>
    shards.map((s) => ({
      schema: s.schema,
      rows: s.rows.map((r) => ({ ...r, error_message: String(r['error_message']).split(':').slice(0, 2).join(':') })),
    }));
  assert.deepEqual(comparable(again.shards), comparable(run.shards));
});

void test('reranking is off by default: no candidate columns, the plan options as before', async () => {
  const run = await filterAll(`${tmp.path}/off`, { ...SPEC, numBeams: 3 });
  assert.deepEqual(Object.keys(run.plan.captioner!.options).sort(), ['maxNewTokens', 'numBeams', 'prompt']);
  for (const shard of run.shards) {
    const names = shard.schema.map(([n]) => n);
    assert.ok(!names.includes('caption_candidates') && !names.includes('caption_candidate_scores'), names.join(','));
  }
});

void test('bad reranking options are refused before anything is written, naming the field and the fix', async () => {
  const storage = new LocalStorage(`${tmp.path}/bad`);
  const lineage = new LineageStore(`${tmp.path}/bad/lineage.db`);
  try {
    await writeSourceDataset(storage, lineage, 'web');
    const cases: [Partial<FilterPlanSpec>, RegExp][] = [
      [{ captionCandidates: { count: 0 } }, /captionCandidates\.count is 0; it must be an integer >= 1/],
      [{ captionCandidates: { count: 2.5 } }, /captionCandidates\.count is 2\.5/],
      [{ captionCandidates: { count: 3, select: 'beam' as 'clip' } }, /captionCandidates\.select is "beam"/],
      [{ captionCandidates: { count: 3 }, captionerModelDir: null }, /no captioner model was given/],
      [{ captionCandidates: { count: 3 }, clipModelDir: '' }, /no CLIP model directory was given \(clipModelDir\)/],
      [{ captionCandidates: { count: 3 }, numBeams: 2 }, /captionCandidates\.count is 3 but numBeams is 2/],
      [{ captionCandidates: { count: 3, from: 'nucleus' as 'beams' } }, /captionCandidates\.from is "nucleus"/],
      [
        { captionCandidates: { count: 3, seed: 1 } },
        /captionCandidates sets seed, which only apply to sampled candidates/,
      ],
      [{ captionCandidates: { count: 3, from: 'sampling', seed: -1 } }, /captionCandidates\.seed is -1/],
      [{ captionCandidates: { count: 3, from: 'sampling', temperature: 0 } }, /captionCandidates\.temperature is 0/],
      [{ captionCandidates: { count: 3, from: 'sampling', topP: 0 } }, /captionCandidates\.topP is 0/],
    ];
    for (const [patch, msg] of cases) {
      await assert.rejects(planFilter(storage, { ...SPEC, ...patch }, 1), (err: Error) => {
        assert.ok(err instanceof ConfigError, `${JSON.stringify(patch)}: ${err.name}`);
        assert.match(err.message, msg);
        assert.ok((err as ConfigError).fix.length > 0);
        return true;
      });
    }
    assert.equal(await storage.exists(new DatasetLayout(storage, 'web', 2).planUri), false);
    await assert.rejects(
      loadCaptioner(BLIP_DIR, { device: 'cpu', numBeams: 2, candidates: 3 }),
      /candidates is 3 but numBeams is 2/,
    );
  } finally {
    lineage.close();
  }
});

void test('sampleToken draws from the softmax restricted to the top-p nucleus (frequencies over 40,000 draws)', () => {
  const logits = new Float32Array([2, 0.5, 1, -1, 1]);
  const soft = Array.from(logits, (x) => Math.exp(x / 0.8));
  const z = soft.reduce((a, b) => a + b, 0);
  const p = soft.map((x) => x / z);
  // Probabilities 0.57, 0.09, 0.16, 0.01, 0.16. topP 0.8: by descending probability 0, then 2 and 4 (a tie,
  // lower id first): 0.57, 0.74, 0.90, so {0, 2, 4} (transformers' TopPLogitsWarper keeps the same set).
  const nucleus = [0, 2, 4];
  const mass = nucleus.reduce((a, v) => a + p[v]!, 0);
  const rng = mulberry32(12345);
  const counts = new Array<number>(5).fill(0);
  const n = 40_000;
  for (let i = 0; i < n; i++) counts[sampleToken(logits, 0, 5, { temperature: 0.8, topP: 0.8 }, rng())]!++;
  for (let v = 0; v < 5; v++) {
    const want = nucleus.includes(v) ? p[v]! / mass : 0;
    assert.ok(Math.abs(counts[v]! / n - want) < 0.01, `token ${v}: ${counts[v]! / n} vs ${want}`);
  }
  // topP 1 keeps every token; a tiny topP keeps only the most probable one.
  const all = new Array<number>(5).fill(0);
  for (let i = 0; i < n; i++) all[sampleToken(logits, 0, 5, { temperature: 0.8, topP: 1 }, rng())]!++;
  for (let v = 0; v < 5; v++) assert.ok(Math.abs(all[v]! / n - p[v]!) < 0.01, `token ${v}: ${all[v]! / n} vs ${p[v]}`);
  assert.equal(sampleToken(logits, 0, 5, { temperature: 1, topP: 1e-9 }, 0.999), 0);
});

void test('sampled candidates: seeded per image (batched = one by one = rerun), another seed differs, a tiny top_p gives the greedy caption', async () => {
  const images = referenceImages();
  const load = (sampling: { seed: number; temperature: number; topP: number }) =>
    loadCaptioner(BLIP_DIR, { device: 'cpu', maxNewTokens: 6, prompt: 'a picture of', candidates: 3, sampling });
  const cap = await load({ seed: 7, temperature: 1, topP: 0.9 });
  const batched = (await cap.captionCandidateRows(images)).candidates;
  const greedy = (await cap.captionRows(images)).captions;
  for (const [i, image] of images.entries())
    assert.deepEqual((await cap.captionCandidateRows([image])).candidates, [batched[i]], `image ${i} alone`);
  assert.deepEqual((await cap.captionCandidateRows(images)).candidates, batched, 'rerun');
  await cap.dispose();
  assert.ok(batched.every((c) => c !== null && c.length === 3));
  assert.ok(
    batched.some((c) => new Set(c).size > 1),
    'samples of one image differ',
  );
  const other = await load({ seed: 8, temperature: 1, topP: 0.9 });
  assert.notDeepEqual((await other.captionCandidateRows(images)).candidates, batched, 'seed 8 gives other samples');
  await other.dispose();
  const nucleusOfOne = await load({ seed: 7, temperature: 1, topP: 1e-9 });
  assert.deepEqual(
    (await nucleusOfOne.captionCandidateRows(images)).candidates,
    greedy.map((g) => [g, g, g]),
    'top_p ~0 keeps only the argmax token: every sample is the greedy caption',
  );
  await nucleusOfOne.dispose();
});

void test('sampled candidates through the stage: planned with their settings, 3 per image, the CLIP argmax kept', async () => {
  const spec = {
    ...SPEC,
    captionCandidates: { count: 3, from: 'sampling' as const, seed: 7, topP: 0.9 },
  };
  const run = await filterAll(`${tmp.path}/sampled`, spec);
  assert.deepEqual(run.plan.captioner?.options, {
    maxNewTokens: 6,
    numBeams: 1,
    prompt: 'a picture of',
    candidates: { count: 3, select: 'clip', from: 'sampling', seed: 7, temperature: 1, topP: 0.9 },
  });
  const cap = await loadCaptioner(BLIP_DIR, {
    device: 'cpu',
    maxNewTokens: 6,
    prompt: 'a picture of',
    candidates: 3,
    sampling: { seed: 7, temperature: 1, topP: 0.9 },
  });
  const src = sourceRows()
    .flat()
    .filter((r) => r.status === 'success');
  const direct = await cap.captionCandidateRows(src.map((r) => r.jpg));
  await cap.dispose();
  const rows = run.shards.flatMap((s) => s.rows) as Row[];
  let checked = 0;
  src.forEach((s, i) => {
    const row = rows.find((r) => r.key === s.key)!;
    assert.deepEqual(row.caption_candidates, direct.candidates[i] ?? null, `row ${s.key}`);
    if (!row.caption_candidates) return;
    checked++;
    const scores = row.caption_candidate_scores!;
    assert.equal(row.caption_generated, row.caption_candidates[argmax(scores)]);
  });
  assert.ok(checked >= 8);
});
