/**
 * Beam search against transformers' generate(num_beams=k) on the tiny ViT-GPT2 fixture
 * (fixtures/models/captioner-beams.json, written by scripts/fixtures/make_beam_reference.py).
 * Runs that end hypotheses on a frequent token use a copy of the model directory whose
 * generation_config.json names that token as EOS (the reference passes eos_token_id=...).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadCaptioner } from '../../datasets/filter/captioner.js';
import { beamReference as beams, beamRunOptions, CAPTIONER_DIR, reference, referenceImages } from './fixtures.js';
import { modelCopies } from './model-copies.js';

const images = referenceImages();
const copyModel = modelCopies('kiln-beams-');

/** The fixture model dir, or a copy whose generation_config.json uses another EOS token. */
function modelDirFor(eos: number | null): string {
  if (eos === null) return CAPTIONER_DIR;
  return copyModel(CAPTIONER_DIR, `eos-${eos}`, { 'generation_config.json': { eos_token_id: eos } });
}

void test('the beam reference is robust (sequences unchanged under logit noise) and covers EOS, penalties and prompts', () => {
  assert.deepEqual(beams.images, reference.images);
  assert.ok(beams.noise >= 1e-5);
  for (const r of beams.runs) assert.ok(r.stable_under_noise, r.name);
  const names = beams.runs.map((r) => r.name);
  assert.ok(names.includes('beams2') && names.includes('beams3'));
  // Some best hypotheses end early on EOS (padded), so finished-hypothesis handling is exercised.
  assert.ok(
    beams.runs.some((r) => r.eos_token_id !== null && r.sequences.some((s) => s.at(-1) === 556 && s.length > 2)),
  );
  assert.ok(beams.runs.some((r) => r.early_stopping === true) && beams.runs.some((r) => r.early_stopping === 'never'));
});

for (const run of beams.runs) {
  void test(`${run.name}: token ids equal transformers generate(num_beams=${run.num_beams}) exactly, batched and one by one`, async () => {
    const dir = modelDirFor(run.eos_token_id);
    const cap = await loadCaptioner(dir, { ...beamRunOptions(run), batchSize: images.length });
    try {
      assert.equal(cap.options.numBeams, run.num_beams);
      assert.equal(cap.options.lengthPenalty, run.length_penalty ?? 1);
      assert.equal(cap.options.earlyStopping, run.early_stopping ?? false);
      assert.deepEqual(await cap.generateSequences(images), run.sequences);
      for (const [i, img] of images.entries())
        assert.deepEqual(await cap.generateSequences([img]), [run.single_sequences[i]], `image ${i}`);
      if (run.eos_token_id === null)
        assert.deepEqual(
          await cap.caption(images),
          run.texts.map((t) => t.trim()),
        );
    } finally {
      await cap.dispose();
    }
  });
}

void test('length penalty and early stopping default to generation_config.json', async () => {
  const run = beams.runs.find((r) => r.name === 'beams3_eos_lp2_early')!;
  const dir = copyModel(CAPTIONER_DIR, 'gen-config', {
    'generation_config.json': { eos_token_id: run.eos_token_id, length_penalty: 2, early_stopping: true },
  });
  const cap = await loadCaptioner(dir, { device: 'cpu', numBeams: 3, maxNewTokens: run.max_new_tokens });
  try {
    assert.equal(cap.options.lengthPenalty, 2);
    assert.equal(cap.options.earlyStopping, true);
    assert.deepEqual(await cap.generateSequences(images), run.sequences);
  } finally {
    await cap.dispose();
  }
});

void test('generation settings beam search does not apply are refused, not ignored', async () => {
  const dir = copyModel(CAPTIONER_DIR, 'ngram', { 'generation_config.json': { no_repeat_ngram_size: 3 } });
  await assert.rejects(
    loadCaptioner(dir, { device: 'cpu', numBeams: 2 }),
    (e: Error & { code?: string }) => e.code === 'KILN_CONFIG' && /no_repeat_ngram_size=3/.test(e.message),
  );
  await assert.rejects(
    loadCaptioner(CAPTIONER_DIR, { device: 'cpu', numBeams: 2, earlyStopping: 'sometimes' as never }),
    (e: Error & { code?: string }) => e.code === 'KILN_CONFIG' && /earlyStopping/.test(e.message),
  );
});
