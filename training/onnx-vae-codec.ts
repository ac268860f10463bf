/**
 * A frozen VAE as a `LatentCodec`: a diffusers `AutoencoderKL` exported to ONNX in the Hugging Face
 * Optimum diffusers layout, run through ONNX Runtime (CUDA when usable, else CPU; infra/onnx-runtime.ts,
 * overridable with KILN_ONNX_DEVICE).
 *
 *   <dir>/vae_encoder/model.onnx   input `sample` [B, 3, H, W] in [-1, 1]
 *                                  output `latent_parameters` [B, 2C, H/f, W/f]: mean ++ logvar
 *                                  (Optimum >= 1.24 / optimum-onnx; older exports name it
 *                                  `latent_sample` and hold a sample, C channels: refused)
 *   <dir>/vae_encoder/config.json  the diffusers VAE config (latent_channels, block_out_channels,
 *   <dir>/vae_decoder/config.json   scaling_factor, shift_factor)
 *   <dir>/vae_decoder/model.onnx   input `latent_sample` [B, C, h, w], output `sample` [B, 3, h*f, w*f]
 *
 * encode: NHWC [-1, 1] -> NCHW -> encoder -> the distribution's mean (deterministic: no sampling,
 * so a resumed run sees the same latents) -> (mean - shift_factor) * scaling_factor -> NHWC.
 * decode: z / scaling_factor + shift_factor -> decoder -> NHWC images (not clamped).
 * f = 2^(len(block_out_channels) - 1), as in diffusers.
 */
import { access, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import type * as Ort from 'onnxruntime-node';
import { z } from 'zod';
import { ConfigError } from '../infra/errors.js';
import { sha256File, sha256Hex } from '../infra/hash.js';
import { chooseOnnxDevice, type OnnxDeviceChoice } from '../infra/onnx-runtime.js';
import type { LatentCodec } from './latent-codec.js';
import { assertVaeFiles, HOW_TO, OPTIONAL_VAE_FILES, VAE_FILES } from './vae-files.js';

export { VAE_FILES } from './vae-files.js';

const ENCODER_INPUT = 'sample';
const ENCODER_OUTPUT = 'latent_parameters';
const DECODER_INPUT = 'latent_sample';
const DECODER_OUTPUT = 'sample';

const vaeConfigSchema = z
  .object({
    in_channels: z.number().int().positive().default(3),
    out_channels: z.number().int().positive().default(3),
    latent_channels: z.number().int().positive(),
    block_out_channels: z.array(z.number().int().positive()).min(1),
    scaling_factor: z.number().positive(),
    shift_factor: z.number().nullable().optional(),
    latents_mean: z.array(z.number()).nullable().optional(),
    latents_std: z.array(z.number()).nullable().optional(),
  })
  .loose();

export interface VaeInfo {
  dir: string;
  channels: number;
  downsample: number;
  scalingFactor: number;
  shiftFactor: number;
  sha256: string;
}

/** Check the layout, read the configs and hash the files (no ONNX Runtime involved). */
export async function readVaeDir(dirInput: string): Promise<VaeInfo> {
  const dir = await assertVaeFiles(dirInput);
  const enc = await readVaeConfig(join(dir, 'vae_encoder/config.json'));
  const dec = await readVaeConfig(join(dir, 'vae_decoder/config.json'));
  for (const key of ['latent_channels', 'scaling_factor', 'shift_factor'] as const) {
    if ((enc[key] ?? null) !== (dec[key] ?? null)) {
      throw new ConfigError(
        `VAE directory ${dir}: vae_encoder/config.json and vae_decoder/config.json disagree on ${key} (${enc[key]} vs ${dec[key]})`,
        'export encoder and decoder from the same VAE.',
      );
    }
  }
  if (enc.latents_mean || enc.latents_std) {
    throw new ConfigError(
      `VAE directory ${dir}: vae_encoder/config.json sets per-channel latents_mean/latents_std, ` +
        `which Kiln does not apply (only scaling_factor and shift_factor)`,
      'use a VAE normalised by scaling_factor/shift_factor only, or set latents_mean/latents_std to null if the pipeline does not use them.',
    );
  }
  if (enc.in_channels !== 3 || dec.out_channels !== 3) {
    throw new ConfigError(
      `VAE directory ${dir}: the VAE maps ${enc.in_channels} -> ${dec.out_channels} image channels; Kiln trains on RGB`,
      'use an RGB VAE (in_channels and out_channels 3).',
    );
  }
  const lines: string[] = [];
  for (const f of [...VAE_FILES, ...OPTIONAL_VAE_FILES]) {
    const path = join(dir, f);
    const present =
      VAE_FILES.includes(f as (typeof VAE_FILES)[number]) ||
      (await access(path).then(
        () => true,
        () => false,
      ));
    if (present) lines.push(`${f} ${await sha256File(path)}\n`);
  }
  return {
    dir,
    channels: enc.latent_channels,
    downsample: 2 ** (enc.block_out_channels.length - 1),
    scalingFactor: enc.scaling_factor,
    shiftFactor: enc.shift_factor ?? 0,
    sha256: sha256Hex(lines.join('')),
  };
}

async function readVaeConfig(path: string): Promise<z.output<typeof vaeConfigSchema>> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    throw new ConfigError(`VAE config ${path} is not valid JSON: ${(err as Error).message}`, HOW_TO);
  }
  const r = vaeConfigSchema.safeParse(parsed);
  if (!r.success) {
    throw new ConfigError(
      `VAE config ${path} is not a diffusers AutoencoderKL config: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
      HOW_TO,
    );
  }
  return r.data;
}

export interface OnnxVaeOptions {
  /** Images per ONNX Runtime call (default 8). */
  batchSize?: number;
}

export class OnnxVaeCodec implements LatentCodec {
  readonly name: string;
  readonly sha256: string;
  readonly channels: number;
  readonly downsample: number;

  /** The ONNX Runtime sessions, created on first use: a chunk that reads the latent cache never loads the VAE's weights. */
  private sessions: Promise<{ encoder: Ort.InferenceSession; decoder: Ort.InferenceSession }> | null = null;

  private constructor(
    readonly info: VaeInfo,
    readonly device: OnnxDeviceChoice,
    private readonly ort: typeof Ort,
    private readonly options: Ort.InferenceSession.SessionOptions,
    private readonly batchSize: number,
  ) {
    this.name = `onnx-vae:${basename(info.dir)}`;
    this.sha256 = info.sha256;
    this.channels = info.channels;
    this.downsample = info.downsample;
  }

  /** Validate the directory and read its configs and hashes; the ONNX Runtime sessions are created on first encode or decode. */
  static async open(dir: string, opts: OnnxVaeOptions = {}): Promise<OnnxVaeCodec> {
    const info = await readVaeDir(dir);
    const ort = await import('onnxruntime-node');
    const device = await chooseOnnxDevice();
    // Kiln's trainer shares cores with this session: ORT's spinning threads would only steal them.
    const options: Ort.InferenceSession.SessionOptions = {
      executionProviders: [device.device],
      extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
    };
    return new OnnxVaeCodec(info, device, ort, options, Math.max(1, opts.batchSize ?? 8));
  }

  private loadSessions(): Promise<{ encoder: Ort.InferenceSession; decoder: Ort.InferenceSession }> {
    const { ort, info, options } = this;
    const load = async (file: string, input: string, output: string): Promise<Ort.InferenceSession> => {
      const path = join(info.dir, file);
      const session = await ort.InferenceSession.create(path, options).catch((err: unknown) => {
        throw new ConfigError(
          `ONNX Runtime could not load ${path}: ${(err as Error).message.split('\n')[0] ?? ''}`,
          HOW_TO,
        );
      });
      if (!session.inputNames.includes(input) || !session.outputNames.includes(output)) {
        const names = `inputs [${session.inputNames.join(', ')}], outputs [${session.outputNames.join(', ')}]`;
        await session.release();
        throw new ConfigError(
          `${path} has ${names}; Kiln needs input "${input}" and output "${output}" (the Optimum diffusers VAE export)`,
          HOW_TO,
        );
      }
      return session;
    };
    this.sessions ??= (async () => {
      const encoder = await load('vae_encoder/model.onnx', ENCODER_INPUT, ENCODER_OUTPUT);
      try {
        return { encoder, decoder: await load('vae_decoder/model.onnx', DECODER_INPUT, DECODER_OUTPUT) };
      } catch (err) {
        await encoder.release();
        throw err;
      }
    })();
    return this.sessions;
  }

  async encode(images: tf.Tensor4D): Promise<tf.Tensor4D> {
    const [B, H, W, C] = images.shape;
    const f = this.downsample;
    if (C !== 3 || H % f !== 0 || W % f !== 0) {
      throw new ConfigError(
        `${this.name} cannot encode images of shape [${images.shape.join(', ')}]`,
        `pass RGB images whose sides are multiples of the VAE downsample factor ${f}.`,
      );
    }
    const h = H / f;
    const w = W / f;
    const plane = this.channels * h * w;
    const input = await nchw(images);
    const out = new Float32Array(B * plane);
    const { scalingFactor: scale, shiftFactor: shift } = this.info;
    for (let s = 0; s < B; s += this.batchSize) {
      const n = Math.min(this.batchSize, B - s);
      const x = new this.ort.Tensor('float32', input.subarray(s * 3 * H * W, (s + n) * 3 * H * W), [n, 3, H, W]);
      const moments = await this.run((await this.loadSessions()).encoder, ENCODER_INPUT, x, ENCODER_OUTPUT, [
        n,
        2 * this.channels,
        h,
        w,
      ]);
      // moments per sample: [mean (C planes), logvar (C planes)]; keep the mean.
      for (let i = 0; i < n; i++) {
        const from = i * 2 * plane;
        const to = (s + i) * plane;
        for (let k = 0; k < plane; k++) out[to + k] = (moments[from + k]! - shift) * scale;
      }
    }
    return nhwc(out, [B, this.channels, h, w]);
  }

  async decode(latents: tf.Tensor4D): Promise<tf.Tensor4D> {
    const [B, h, w, C] = latents.shape;
    if (C !== this.channels) {
      throw new ConfigError(
        `${this.name} cannot decode latents of shape [${latents.shape.join(', ')}]`,
        `pass latents with ${this.channels} channels.`,
      );
    }
    const H = h * this.downsample;
    const W = w * this.downsample;
    const plane = C * h * w;
    const z = await nchw(latents);
    const { scalingFactor: scale, shiftFactor: shift } = this.info;
    for (let k = 0; k < z.length; k++) z[k] = z[k]! / scale + shift;
    const out = new Float32Array(B * 3 * H * W);
    for (let s = 0; s < B; s += this.batchSize) {
      const n = Math.min(this.batchSize, B - s);
      const x = new this.ort.Tensor('float32', z.subarray(s * plane, (s + n) * plane), [n, C, h, w]);
      out.set(
        await this.run((await this.loadSessions()).decoder, DECODER_INPUT, x, DECODER_OUTPUT, [n, 3, H, W]),
        s * 3 * H * W,
      );
    }
    return nhwc(out, [B, 3, H, W]);
  }

  private async run(
    session: Ort.InferenceSession,
    input: string,
    x: Ort.Tensor,
    output: string,
    expected: number[],
  ): Promise<Float32Array> {
    const result = await session.run({ [input]: x });
    const y = result[output];
    if (!y || y.type !== 'float32' || y.dims.join(',') !== expected.join(',')) {
      throw new ConfigError(
        `${this.name}: ONNX output "${output}" has shape [${y?.dims.join(', ') ?? ''}] (${y?.type ?? 'missing'}), expected float32 [${expected.join(', ')}]`,
        HOW_TO,
      );
    }
    return y.data as Float32Array;
  }

  async dispose(): Promise<void> {
    const sessions = await this.sessions?.catch(() => null);
    this.sessions = null;
    await sessions?.encoder.release();
    await sessions?.decoder.release();
  }
}

/** NHWC tensor -> NCHW values. */
async function nchw(x: tf.Tensor4D): Promise<Float32Array> {
  const t = tf.transpose(x, [0, 3, 1, 2]);
  try {
    return (await t.data()) as Float32Array;
  } finally {
    t.dispose();
  }
}

/** NCHW values -> NHWC tensor. */
function nhwc(values: Float32Array, shape: [number, number, number, number]): tf.Tensor4D {
  return tf.tidy(() => tf.transpose(tf.tensor4d(values, shape), [0, 2, 3, 1]));
}
