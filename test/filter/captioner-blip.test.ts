/**
 * BLIP captioning (BlipForConditionalGeneration exported by scripts/models/export_blip.py) on the tiny
 * random-weight fixture fixtures/models/blip-tiny: pixel values and token ids equal transformers'
 * (fixtures/models/blip-reference.json, scripts/fixtures/make_tiny_blip.py) for greedy and beam configs,
 * with and without the conditional prompt, batched and one image at a time; the type and decoder path
 * are recorded; incomplete or stale exports are refused with the fix.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCaptioner } from '../../datasets/filter/captioner.js';
import { captionerType, checkModelDir } from '../../datasets/filter/model-dir.js';
import { assertClose, beamRunOptions, MODELS, referenceImages, type BeamReferenceRun } from './fixtures.js';
import { modelCopies } from './model-copies.js';

const BLIP_DIR = `${MODELS}/blip-tiny`;
interface BlipRun extends BeamReferenceRun {
  /** Null: the model's own end token; else a copy whose text_config names this one. */
  sep_token_id: number | null;
}
interface BlipReference {
  images: string[];
  pixel_values: { shape: number[]; data: number[] };
  prompt_ids: number[];
  runs: BlipRun[];
}
const ref = JSON.parse(readFileSync(`${MODELS}/blip-reference.json`, 'utf8')) as BlipReference;
const images = referenceImages();
const copyModel = modelCopies('kiln-blip-');
const TEXT_CONFIG = (JSON.parse(readFileSync(`${BLIP_DIR}/config.json`, 'utf8')) as { text_config: object })
  .text_config;

/** A copy of the fixture with text_config fields replaced. */
function withTextConfig(name: string, fields: Record<string, unknown>): string {
  return copyModel(BLIP_DIR, name, { 'config.json': { text_config: { ...TEXT_CONFIG, ...fields } } });
}

void test('the reference covers greedy, beams, the prompt and early end tokens, and no decision is within 1e-4 of a tie', () => {
  assert.deepEqual(ref.images, [
    'gradient_96x64.png',
    'checker_40x56.jpg',
    'noise_rgba_32x32.png',
    'grey_48x48.jpg',
    'circles_30x20.webp',
  ]);
  assert.ok(ref.runs.length >= 8);
  assert.ok(
    ref.runs.every((r) => r.stable_under_noise),
    ref.runs
      .filter((r) => !r.stable_under_noise)
      .map((r) => r.name)
      .join(', '),
  );
  assert.ok(ref.runs.some((r) => r.num_beams === 1 && r.prompt) && ref.runs.some((r) => r.num_beams > 1 && r.prompt));
  assert.ok(
    ref.runs.some((r) => r.sep_token_id !== null && r.sequences.some((s) => s.includes(r.sep_token_id as number))),
  );
  // Different images give different captions (the decoder attends to the image).
  assert.equal(new Set(ref.runs[0]?.sequences.map((s) => s.join())).size, images.length);
});

void test("BLIP pixel values equal transformers' BlipImageProcessor (bicubic 32x32, CLIP mean/std) exactly", async () => {
  const cap = await loadCaptioner(BLIP_DIR, { device: 'cpu' });
  try {
    const px = await cap.pixelValues(images);
    assert.deepEqual(px.dims, ref.pixel_values.shape);
    assertClose(px.data, ref.pixel_values.data, 0, 'pixel_values');
  } finally {
    await cap.dispose();
  }
});

for (const run of ref.runs) {
  void test(`BLIP ${run.name}: token ids and captions equal transformers generate() (batched and per image)`, async () => {
    const dir = run.sep_token_id === null ? BLIP_DIR : withTextConfig(run.name, { sep_token_id: run.sep_token_id });
    const cap = await loadCaptioner(dir, { ...beamRunOptions(run), batchSize: images.length });
    try {
      assert.equal(cap.options.type, 'blip');
      assert.equal(cap.options.decoder.path, 'split');
      assert.deepEqual(await cap.generateSequences(images), run.sequences);
      assert.deepEqual(
        await cap.caption(images),
        run.texts.map((t) => t.trim()),
      );
    } finally {
      await cap.dispose();
    }
    const one = await loadCaptioner(dir, { ...beamRunOptions(run), batchSize: 1 });
    try {
      const singles = await one.generateSequences(images);
      assert.deepEqual(singles, run.single_sequences);
    } finally {
      await one.dispose();
    }
  });
}

void test("BLIP: the prompt is [DEC] + the prompt's word pieces, as BlipProcessor + generate() build it; the lineage options name the type", async () => {
  const run = ref.runs.find((r) => r.name === 'greedy_prompt') as BlipRun;
  const bos = (JSON.parse(readFileSync(`${BLIP_DIR}/config.json`, 'utf8')) as { text_config: { bos_token_id: number } })
    .text_config.bos_token_id;
  const prefix = [bos, ...ref.prompt_ids.slice(1, -1)];
  assert.ok(run.sequences.every((s) => prefix.every((t, i) => s[i] === t)));
  const cap = await loadCaptioner(BLIP_DIR, { device: 'cpu', prompt: 'a picture of', maxNewTokens: 2 });
  try {
    assert.equal(cap.options.type, 'blip');
    assert.equal(cap.options.prompt, 'a picture of');
    assert.deepEqual(cap.options.decoder.files, ['onnx/decoder_cross_kv.onnx', 'onnx/decoder_with_past_xkv.onnx']);
    assert.match(cap.options.decoder.reason, /BLIP export/);
    assert.ok((await cap.fileHashes()).some((f) => f.path === 'onnx/decoder_with_past_xkv.onnx'));
  } finally {
    await cap.dispose();
  }
});

void test('the captioner type comes from config.json; a BLIP directory missing a graph names the BLIP files and the import command', async () => {
  assert.equal(await captionerType(BLIP_DIR), 'blip');
  assert.equal(await captionerType(`${MODELS}/vit-gpt2-tiny`), 'vit-gpt2');
  const odd = copyModel(BLIP_DIR, 'odd-type', { 'config.json': { model_type: 'git' } });
  await assert.rejects(captionerType(odd), (e: Error & { code?: string; fix?: string }) => {
    assert.equal(e.code, 'KILN_CONFIG');
    assert.match(e.message, /model_type "git"/);
    assert.match(e.fix ?? '', /kiln models import captioner/);
    return true;
  });
  const missing = copyModel(BLIP_DIR, 'missing');
  rmSync(join(missing, 'onnx/decoder_cross_kv.onnx'));
  await assert.rejects(checkModelDir(missing, 'captioner'), (e: Error & { code?: string; fix?: string }) => {
    assert.equal(e.code, 'KILN_MISSING_FILE');
    assert.match(e.message, /is missing onnx\/decoder_cross_kv\.onnx/);
    assert.match(e.fix ?? '', /BLIP captioner.*kiln models import captioner/);
    return true;
  });
});

void test('a BLIP export whose decoder graph changed since export is refused with the re-export fix', async () => {
  const edited = copyModel(BLIP_DIR, 'edited');
  writeFileSync(
    join(edited, 'onnx/decoder_with_past_xkv.onnx'),
    readFileSync(join(BLIP_DIR, 'onnx/encoder_model.onnx')),
  );
  for (const numBeams of [1, 3]) {
    await assert.rejects(
      loadCaptioner(edited, { device: 'cpu', numBeams }),
      (e: Error & { code?: string; fix?: string }) => {
        assert.equal(e.code, 'KILN_CONFIG');
        assert.match(e.message, /decoder_with_past_xkv\.onnx has sha256 .*, the split recorded/);
        assert.match(e.fix ?? '', /export the model again: `kiln models import captioner/);
        return true;
      },
    );
  }
});

void test('BLIP generation settings Kiln does not apply are refused, even for greedy', async () => {
  const dir = withTextConfig('rep-penalty', { repetition_penalty: 1.3 });
  await assert.rejects(loadCaptioner(dir, { device: 'cpu' }), (e: Error & { code?: string; fix?: string }) => {
    assert.equal(e.code, 'KILN_CONFIG');
    assert.match(e.message, /text_config sets repetition_penalty=1\.3/);
    assert.match(e.fix ?? '', /text_config/);
    return true;
  });
});
