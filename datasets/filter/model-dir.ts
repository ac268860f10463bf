/**
 * Local model directories in the Hugging Face ONNX layout (as Optimum exports them and transformers.js
 * loads them): checking that the expected files are present, and hashing every file for lineage.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { ConfigError, MissingFileError } from '../../infra/errors.js';
import { sha256File } from '../../infra/hash.js';
import { localModelDir } from '../../infra/storage-cache.js';

/** The model kinds the filter stage loads. */
export type ModelKind = 'clip' | 'captioner';

/**
 * Captioner architectures Kiln runs, told apart by config.json's `model_type`: `vit-gpt2`
 * (`vision-encoder-decoder`, Optimum's image-to-text-with-past export) and `blip`
 * (BlipForConditionalGeneration, exported by scripts/models/export_blip.py).
 */
export type CaptionerType = 'vit-gpt2' | 'blip';

/** Files each kind needs (paths relative to the model directory), fp32 ONNX graphs. */
export const EXPECTED_MODEL_FILES: Readonly<Record<ModelKind, readonly string[]>> = {
  clip: [
    'config.json',
    'tokenizer.json',
    'tokenizer_config.json',
    'preprocessor_config.json',
    'onnx/text_model.onnx',
    'onnx/vision_model.onnx',
  ],
  captioner: [
    'config.json',
    'tokenizer.json',
    'tokenizer_config.json',
    'preprocessor_config.json',
    'onnx/encoder_model.onnx',
    'onnx/decoder_model_merged.onnx',
  ],
};

/** Files of a BLIP captioner (scripts/models/export_blip.py's layout: the decoder comes split). */
export const BLIP_CAPTIONER_FILES: readonly string[] = [
  'config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'preprocessor_config.json',
  'onnx/encoder_model.onnx',
  'onnx/decoder_cross_kv.onnx',
  'onnx/decoder_with_past_xkv.onnx',
  'onnx/decoder_xkv.json',
];

const HOW_TO_EXPORT_BLIP =
  'export it with `kiln models import captioner <hf-blip-dir> --out DIR` (or `python scripts/models/export_blip.py <hf-blip-dir> --out DIR`)';

/**
 * The captioner architecture of a model directory, from config.json's `model_type` (`blip` -> blip,
 * `vision-encoder-decoder` or none -> vit-gpt2). Other types are a ConfigError naming the supported ones.
 */
export async function captionerType(dir: string): Promise<CaptionerType> {
  let modelType: unknown;
  try {
    modelType = (await readModelJson<{ model_type?: unknown }>(dir, 'config.json')).model_type;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'vit-gpt2';
    throw err;
  }
  if (modelType === 'blip') return 'blip';
  if (modelType === undefined || modelType === 'vision-encoder-decoder') return 'vit-gpt2';
  throw new ConfigError(
    `${join(dir, 'config.json')} has model_type ${JSON.stringify(modelType)}, a captioner Kiln cannot run`,
    'use a BLIP captioner (model_type "blip": BlipForConditionalGeneration) ' +
      'or a ViT-GPT2 style VisionEncoderDecoder (model_type "vision-encoder-decoder"); ' +
      '`kiln models import captioner DIR --out OUT` exports either.',
  );
}

const HOW_TO_EXPORT: Record<ModelKind, string> = {
  clip:
    'import a CLIP checkpoint with `kiln models import clip DIR --out OUT` (Optimum split into text and ' +
    'vision graphs, as transformers.js models such as Xenova/clip-vit-base-patch32 are laid out), or ' +
    'generate the tiny test model with `.venv-models/bin/python scripts/fixtures/make_tiny_models.py`',
  captioner:
    'export an image-to-text model with `optimum-cli export onnx --task image-to-text-with-past` (ViT-GPT2 ' +
    'style VisionEncoderDecoder) and keep encoder_model.onnx and decoder_model_merged.onnx under onnx/, ' +
    'or generate the tiny test model with `.venv-models/bin/python ' +
    'scripts/fixtures/make_tiny_models.py`',
};

/** A model file and its sha256 (hex), path relative to the model directory with "/" separators. */
export interface ModelFileHash {
  path: string;
  sha256: string;
  bytes: number;
}

/**
 * Resolve `dir` and check every file `kind` needs is there. Throws MissingFileError (code
 * KILN_MISSING_FILE) naming the directory, the missing files and the full expected list.
 */
export async function checkModelDir(dir: string, kind: ModelKind): Promise<string> {
  const abs = resolve(await localModelDir(dir)); // s3:// model dirs come from the local cache
  const isDir = await stat(abs).then(
    (s) => s.isDirectory(),
    () => false,
  );
  const blip = isDir && kind === 'captioner' && (await captionerType(abs)) === 'blip';
  const expected = blip ? BLIP_CAPTIONER_FILES : EXPECTED_MODEL_FILES[kind];
  const missing: string[] = [];
  if (isDir) {
    for (const f of expected) {
      const ok = await stat(join(abs, f)).then(
        (s) => s.isFile(),
        () => false,
      );
      if (!ok) missing.push(f);
    }
  }
  if (!isDir || missing.length > 0) {
    const what = isDir ? `is missing ${missing.join(', ')}` : 'does not exist';
    throw new MissingFileError(
      `${kind} model directory ${abs} ${what} (expected files: ${expected.join(', ')}). Kiln never downloads models at run time.`,
      `put a ${blip ? 'BLIP captioner' : kind} model in the Hugging Face ONNX layout at ${abs}: ${blip ? HOW_TO_EXPORT_BLIP : HOW_TO_EXPORT[kind]}.`,
    );
  }
  return abs;
}

async function listFiles(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(root, p)));
    else if (entry.isFile()) out.push(relative(root, p).split(sep).join('/'));
  }
  return out;
}

/** sha256 of every file under the model directory, sorted by path: the model's identity in lineage. */
export async function hashModelDir(dir: string): Promise<ModelFileHash[]> {
  const abs = resolve(dir);
  const files = (await listFiles(abs)).sort();
  const out: ModelFileHash[] = [];
  for (const path of files) {
    const full = join(abs, path);
    out.push({ path, sha256: await sha256File(full), bytes: (await stat(full)).size });
  }
  return out;
}

/** Read and parse a JSON file of the model directory. */
export async function readModelJson<T>(dir: string, name: string): Promise<T> {
  return JSON.parse(await readFile(join(dir, name), 'utf8')) as T;
}
