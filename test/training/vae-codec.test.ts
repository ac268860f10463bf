import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { createTrainActivities } from '../../activities/train.js';
import { sampleBatch } from '../../eval/sampling.js';
import { loadConfig, PROJECT_ROOT } from '../../infra/config.js';
import { LineageStore } from '../../infra/lineage/store.js';
import { LocalStorage } from '../../infra/storage.js';
import { ConfigError, MissingFileError } from '../../infra/errors.js';
import { sha256File, sha256Hex } from '../../infra/hash.js';
import { selectTfBackend } from '../../infra/tfjs-backend.js';
import { checkpointUri, readCheckpointState } from '../../training/checkpoint.js';
import type { TrainingConfigInput } from '../../training/config.js';
import { CheckpointError } from '../../training/errors.js';
import { loadTrainedModel } from '../../training/inference.js';
import { createLatentCodec } from '../../training/latent-codec.js';
import { OnnxVaeCodec, VAE_FILES } from '../../training/onnx-vae-codec.js';
import { runTrainingChunk, type TrainingChunkResult } from '../../training/run-chunk.js';
import { tempStorage, twoShardDataset } from './shard-fixtures.js';
import { TEST_CONFIG } from './train-config.js';

await selectTfBackend();
const VAE_DIR = join(PROJECT_ROOT, 'fixtures', 'models', 'tiny-vae');
interface Arr {
  shape: number[];
  data: number[];
}
const ref = JSON.parse(await readFile(join(VAE_DIR, 'reference.json'), 'utf8')) as {
  scaling_factor: number;
  shift_factor: number;
  images: Arr;
  latents_scaled: Arr;
  decode_input: Arr;
  decoded: Arr;
};

const { storage, root, cleanup } = await tempStorage();
test.after(cleanup);
const shards = await twoShardDataset(storage);
/** TEST_CONFIG in the tiny VAE's latent space: 16x16 RGB -> 8x8x4 latents, patch 2 -> 16 tokens. */
const vaeConfig = (dir = VAE_DIR): TrainingConfigInput => ({
  ...TEST_CONFIG,
  codec: { vae: dir },
  denoiser: { ...TEST_CONFIG.denoiser, patchSize: 2 },
});
const chunk = (run: string, fromStep: number, steps: number, config = vaeConfig()) =>
  runTrainingChunk({ storage, runUri: storage.uri('runs', run), config, datasetShardUris: shards, fromStep, steps });

/** NCHW reference array -> NHWC tensor. */
const nhwc = (a: Arr) =>
  tf.tidy(
    () => tf.transpose(tf.tensor4d(a.data, a.shape as [number, number, number, number]), [0, 2, 3, 1]) as tf.Tensor4D,
  );
async function maxAbsDiff(x: tf.Tensor4D, expected: Arr): Promise<number> {
  const e = nhwc(expected);
  assert.deepEqual(x.shape, e.shape);
  const d = tf.tidy(() => tf.max(tf.abs(tf.sub(x, e))));
  const v = (await d.data())[0]!;
  tf.dispose([e, d]);
  return v;
}

/** The codec hash as documented: sha256 over `<relative path> <sha256>\n` lines of the four files. */
async function expectedHash(dir: string): Promise<string> {
  let lines = '';
  for (const f of VAE_FILES) lines += `${f} ${await sha256File(join(dir, f))}\n`;
  return sha256Hex(lines);
}

async function chunkInChildProcess(
  run: string,
  fromStep: number,
  steps: number,
  config: TrainingConfigInput,
): Promise<TrainingChunkResult> {
  const script = fileURLToPath(new URL('./chunk-child.js', import.meta.url));
  const args = JSON.stringify({ runUri: storage.uri('runs', run), config, shards, fromStep, steps });
  const { stdout } = await promisify(execFile)(process.execPath, [script, root, args], { env: process.env });
  return JSON.parse(stdout.trim().split('\n').pop()!) as TrainingChunkResult;
}

void test('ONNX encode and decode match diffusers AutoencoderKL (latent mean, scaling and shift factors) to 1e-4', async () => {
  // Batch size 2 over 3 images: the codec splits the batch across ONNX Runtime calls.
  const codec = await OnnxVaeCodec.open(VAE_DIR, { batchSize: 2 });
  try {
    assert.equal(codec.name, 'onnx-vae:tiny-vae');
    assert.equal(codec.channels, 4);
    assert.equal(codec.downsample, 2);
    assert.equal(codec.info.scalingFactor, ref.scaling_factor);
    assert.equal(codec.info.shiftFactor, ref.shift_factor);
    assert.equal(codec.sha256, await expectedHash(VAE_DIR));
    const images = nhwc(ref.images);
    const latents = await codec.encode(images);
    assert.deepEqual(latents.shape, [3, 8, 8, 4]);
    assert.ok((await maxAbsDiff(latents, ref.latents_scaled)) < 1e-4);
    const z = nhwc(ref.decode_input);
    const decoded = await codec.decode(z);
    assert.deepEqual(decoded.shape, [3, 16, 16, 3]);
    assert.ok((await maxAbsDiff(decoded, ref.decoded)) < 1e-4);
    // The same through the factory, one ONNX call for the whole batch.
    const viaFactory = await createLatentCodec({ vae: VAE_DIR });
    const again = await viaFactory.encode(images);
    assert.ok((await maxAbsDiff(again, ref.latents_scaled)) < 1e-4);
    await viaFactory.dispose();
    tf.dispose([images, latents, z, decoded, again]);
  } finally {
    await codec.dispose();
  }
});

void test('a missing VAE directory or file is a MissingFileError naming the directory and the expected files', async () => {
  const gone = join(root, 'no-such-vae');
  await assert.rejects(
    createLatentCodec({ vae: gone }),
    (err: unknown) =>
      err instanceof MissingFileError &&
      err.message.includes(gone) &&
      VAE_FILES.every((f) => err.message.includes(f)) &&
      /optimum-cli export onnx/.test(err.fix),
  );
  const partial = join(root, 'partial-vae');
  await cp(VAE_DIR, partial, { recursive: true });
  await rm(join(partial, 'vae_decoder', 'model.onnx'));
  await assert.rejects(
    createLatentCodec({ vae: partial }),
    (err: unknown) =>
      err instanceof MissingFileError && err.message.includes(`${partial} lacks vae_decoder/model.onnx (`),
  );
  // Through a training chunk: nothing is written.
  await assert.rejects(chunk('missing-vae', 0, 1, vaeConfig(gone)), MissingFileError);
  assert.equal(await storage.exists(storage.uri('runs', 'missing-vae', 'checkpoints')), false);
});

void test('the prepare activity refuses a wrong VAE path before any training is scheduled', async () => {
  const config = loadConfig({ dataRoot: join(root, 'kiln-root') });
  const lineage = new LineageStore(config.lineagePath);
  try {
    const acts = createTrainActivities({
      config,
      storage: new LocalStorage(config.dataRoot),
      lineage,
      codeVersion: 'test',
    });
    const gone = join(root, 'typo-vae');
    await assert.rejects(
      acts.prepareTrainingRun({
        jobId: 'vae-prep',
        runName: 'vae-prep',
        dataset: 'none@v1',
        config: vaeConfig(gone),
        chunkSteps: 2,
      }),
      (err: unknown) => err instanceof MissingFileError && err.message.includes(gone),
    );
    assert.equal(lineage.getRun('vae-prep/train'), undefined);
  } finally {
    lineage.close();
  }
});

void test('an image size the VAE factor and patch size do not divide is a ConfigError', async () => {
  const odd = { ...vaeConfig(), resolution: 15, denoiser: { ...TEST_CONFIG.denoiser, patchSize: 1 } };
  await assert.rejects(
    chunk('odd-size', 0, 1, odd),
    (err: unknown) =>
      err instanceof ConfigError &&
      /resolution 15 is not divisible by the downsample factor 2 of codec onnx-vae:tiny-vae/.test(err.message),
  );
  const badPatch = { ...vaeConfig(), resolution: 12, denoiser: { ...TEST_CONFIG.denoiser, patchSize: 4 } };
  await assert.rejects(
    chunk('bad-patch', 0, 1, badPatch),
    (err: unknown) =>
      err instanceof ConfigError && /6x6 latents.*patchSize 4/.test(err.message) && /multiple of 8/.test(err.fix),
  );
});

void test('training in the VAE latent space: finite losses, codec name and hash in state.json; killed and resumed is bit-identical', async () => {
  const straight = await chunk('vae-straight', 0, 4);
  const first = await chunk('vae-resumed', 0, 2);
  const second = await chunkInChildProcess('vae-resumed', 2, 2, vaeConfig());
  assert.equal(straight.losses.length, 4);
  assert.ok(straight.losses.every(Number.isFinite));
  assert.deepEqual([...first.losses, ...second.losses], straight.losses);
  assert.deepEqual(second.sha256s, straight.sha256s, 'model, EMA, optimizer and state.json are byte-identical');
  const hash = await expectedHash(VAE_DIR);
  assert.deepEqual(straight.codec, { name: 'onnx-vae:tiny-vae', sha256: hash });
  const state = await readCheckpointState(storage, straight.checkpointUri);
  assert.equal(state.codec, 'onnx-vae:tiny-vae');
  assert.equal(state.codecSha256, hash);
  // Pixel space differs in shape: the denoiser's input/output is 4 channels (patch 2 -> 2*2*4 values).
  const ck = await loadTrainedModel(storage, straight.checkpointUri);
  assert.equal(ck.spec.denoiser.channels, 4);
  assert.equal(ck.spec.denoiser.size, 8);
  ck.dispose();
  // A repeated chunk reports the recorded codec without loading it.
  assert.deepEqual((await chunk('vae-straight', 0, 4)).codec, straight.codec);
});

void test('resuming after the VAE files changed is a CheckpointError', async () => {
  const dir = join(root, 'vae-copy', 'tiny-vae');
  await cp(VAE_DIR, dir, { recursive: true });
  await chunk('vae-changed', 0, 1, vaeConfig(dir));
  const cfgPath = join(dir, 'vae_decoder', 'config.json');
  await writeFile(
    cfgPath,
    (await readFile(cfgPath, 'utf8')).replace('"_diffusers_version"', '"_note": "edited", "_diffusers_version"'),
  );
  await assert.rejects(
    chunk('vae-changed', 1, 1, vaeConfig(dir)),
    (err: unknown) => err instanceof CheckpointError && /sha256/.test(err.message),
  );
  // Sampling from its checkpoint with the changed files is refused too.
  await assert.rejects(
    loadTrainedModel(storage, checkpointUri(storage, storage.uri('runs', 'vae-changed'), 1)),
    CheckpointError,
  );
});

void test('sampling decodes latents through the VAE to images of the configured size', async () => {
  const run = await chunk('vae-straight', 0, 4);
  const model = await loadTrainedModel(storage, run.checkpointUri);
  assert.deepEqual(model.latentShape, { height: 8, width: 8, channels: 4 });
  const c = model.encode(['a red square', 'a green square']);
  const x = await sampleBatch(model.denoiser, c.cond, c.uncond, [0, 1], {
    method: model.sampler,
    steps: 3,
    guidanceScale: 3,
    seed: 0,
    ...model.latentShape,
    schedule: model.schedule,
  });
  const images = await model.decode(x);
  assert.deepEqual(images.shape, [2, 16, 16, 3]);
  assert.ok((await images.data()).every(Number.isFinite));
  // decode is the VAE decoder, not a reshape: it matches a separately opened codec.
  const codec = await OnnxVaeCodec.open(VAE_DIR);
  const direct = await codec.decode(x);
  assert.deepEqual(await direct.data(), await images.data());
  await codec.dispose();
  tf.dispose([x, images, direct]);
  c.dispose();
  model.dispose();
});
