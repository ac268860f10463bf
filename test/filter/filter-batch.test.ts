import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { loadCaptioner, type Captioner } from '../../datasets/filter/captioner.js';
import { loadClipScorer, type ClipScorer } from '../../datasets/filter/clip-scorer.js';
import { filterLineage, scoreAndCaptionRows } from '../../datasets/filter/filter-batch.js';
import { selectionPolicy } from '../../datasets/filter/selection.js';
import { assertClose, CAPTIONER_DIR, CLIP_DIR, reference, referenceImages } from './fixtures.js';

let scorer: ClipScorer;
let captioner: Captioner;
const images = referenceImages();
const rows = images.map((image, i) => ({ image, caption: reference.captions[i] as string }));
before(async () => {
  scorer = await loadClipScorer(CLIP_DIR, { device: 'cpu', batchSize: 4 });
  captioner = await loadCaptioner(CAPTIONER_DIR, {
    device: 'cpu',
    maxNewTokens: reference.captioner.max_new_tokens,
    batchSize: 4,
  });
});
after(async () => {
  await scorer.dispose();
  await captioner.dispose();
});

void test('captionSource "original": scores of the shard captions, plus generated captions', async () => {
  const out = await scoreAndCaptionRows(rows, { scorer, captioner }, 'original');
  assertClose(
    out.map((r) => r.clip_score as number),
    reference.clip.scores,
    1e-4,
    'original-caption scores',
  );
  assert.deepEqual(
    out.map((r) => r.caption_generated),
    reference.generated_caption_scores.texts,
  );
  assert.ok(out.every((r) => r.error === null));
});

void test('captionSource "generated": scores of the generated captions match transformers to 1e-4', async () => {
  const out = await scoreAndCaptionRows(rows, { scorer, captioner }, 'generated');
  assertClose(
    out.map((r) => r.clip_score as number),
    reference.generated_caption_scores.scores,
    1e-4,
    'generated-caption scores',
  );
});

void test('failed rows keep a reason and no score; "generated" without a captioner is a ConfigError', async () => {
  const out = await scoreAndCaptionRows(
    [{ image: null, caption: 'a' }, rows[0] as (typeof rows)[number]],
    { scorer },
    'original',
  );
  assert.deepEqual(out[0], { clip_score: null, caption_generated: null, error: 'no image bytes' });
  assert.equal(out[1]?.caption_generated, null);
  assertClose([out[1]?.clip_score as number], [reference.clip.scores[0] as number], 1e-4, 'row 1');
  await assert.rejects(
    scoreAndCaptionRows(rows, { scorer }, 'generated'),
    (e: Error & { code?: string }) => e.code === 'KILN_CONFIG',
  );
});

void test('lineage records policy, devices, options and every model file hash', async () => {
  const lin = await filterLineage({ scorer, captioner }, selectionPolicy({ keepTopFraction: 0.3 }));
  assert.equal(lin.policy.keepTopFraction, 0.3);
  assert.equal(lin.clip.device.device, 'cpu');
  assert.equal(lin.clip.files.length, Object.keys(reference.files).filter((p) => p.startsWith('clip-tiny/')).length);
  assert.equal(lin.captioner?.options.maxNewTokens, reference.captioner.max_new_tokens);
  assert.ok(
    lin.captioner?.files.some((f) => f.path === 'onnx/decoder_model_merged.onnx' && /^[0-9a-f]{64}$/.test(f.sha256)),
  );
});
