/**
 * A training session: model, optimiser, EMA, RNG and data stream, started fresh from a config and
 * seed or restored from a checkpoint, advanced one optimiser step at a time. Everything random is
 * drawn from the session's `Rng` in a fixed order: per step the key of the dropout masks, then per
 * sample its caption dropout, timestep and noise (so A micro-batches of B draw what one batch of
 * A x B draws), and the same state always produces the same next step.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../infra/errors.js';
import { sha256Hex } from '../infra/hash.js';
import type { ArtifactStorage } from '../infra/storage.js';
import type { TfBackendChoice } from '../infra/tfjs-backend.js';
import { CHECKPOINT_FORMAT, writeCheckpoint, type LoadedCheckpoint, type WrittenCheckpoint } from './checkpoint.js';
import type { TrainingConfig } from './config.js';
import { openSampleSource, type SampleSource } from './loader-thread.js';
import { runDenoiser } from './denoiser.js';
import { NonFiniteLossError } from './errors.js';
import { variableGrads } from './gradients.js';
import { createLatentCodec, type LatentCodec } from './latent-codec.js';
import { attentionMask, DropoutStream } from './layers.js';
import { learningRateAt } from './lr-schedule.js';
import { buildParams, resolveModel, type ModelSpec } from './model.js';
import { ddpmSchedule, type NoiseSchedule } from './noise-schedule.js';
import {
  drawMicroBatch,
  noisyLatents,
  objectiveTerms,
  gradientShare,
  prxActive,
  prxGradientShare,
  type MeasuredPrxTargets,
} from './objective.js';
import { AdamW, flattenGrads, globalNormClip, WeightEma, type FlatByGroup } from './optimizer.js';
import type { ParamStore } from './params.js';
import { Rng } from './rng.js';
import { entryToFloat32, type NamedArray } from './safetensors.js';
import { encodeText } from './text-encoder.js';
import type { CaptionTokenizer } from './tokenizer.js';

export interface StepResult {
  step: number;
  loss: number;
  diffusion: number;
  /** PRX (unweighted) and its variance and correlation parts, averaged over the micro-batches. */
  prx: number;
  prxVar: number;
  prxCorr: number;
  /** PRX's share of the gradient on the prediction (objective.ts prxGradientShare), averaged over micro-batches. */
  prxGradShare: number;
  gradNorm: number;
  lr: { denoiser: number; text: number };
}

export interface SessionSource {
  storage: ArtifactStorage;
  runUri: string;
  config: TrainingConfig;
  shardUris: readonly string[];
  backend: TfBackendChoice;
  /** Restore from this checkpoint instead of initialising. */
  checkpoint?: LoadedCheckpoint;
  /** The latent codec of `config.codec`, owned by the caller; when absent the session creates (and disposes) its own. */
  codec?: LatentCodec;
  /** PRX targets measured from the data (prx-targets.ts), when `objective.prxTargets` is `measured`. */
  prxTargets?: MeasuredPrxTargets;
  /** With a VAE codec: the latent cache's shards, aligned with `shardUris` (latent-cache.ts builds them). */
  latentShardUris?: readonly string[];
}

export function shardListSha256(shardUris: readonly string[]): string {
  return sha256Hex(JSON.stringify(shardUris));
}

export class TrainingSession {
  step = 0;
  samplesSeen = 0;
  losses: number[] = [];
  lossesFromStep = 1;

  private constructor(
    private readonly src: SessionSource,
    readonly spec: ModelSpec,
    readonly tokenizer: CaptionTokenizer,
    readonly codec: LatentCodec,
    private readonly ownsCodec: boolean,
    readonly params: ParamStore,
    private readonly optimizer: AdamW,
    private readonly ema: WeightEma | null,
    private rng: Rng,
    readonly data: SampleSource,
    private readonly schedule: NoiseSchedule,
  ) {}

  /** Initialise from config + seed, or restore everything from `src.checkpoint`. */
  static async open(src: SessionSource): Promise<TrainingSession> {
    const cfg = src.config;
    const codec = src.codec ?? (await createLatentCodec(cfg.codec));
    const ownsCodec = !src.codec;
    let resolved: Awaited<ReturnType<typeof resolveModel>>;
    let params: ParamStore;
    const ck = src.checkpoint;
    try {
      resolved = await resolveModel(cfg, codec);
      params = await buildParams(cfg, resolved.spec, !ck);
    } catch (err) {
      if (ownsCodec) await codec.dispose();
      throw err;
    }
    const { spec, tokenizer } = resolved;
    const den = spec.denoiser;
    if (codec.sha256 !== null && !src.latentShardUris) {
      if (ownsCodec) await codec.dispose();
      throw new ConfigError(
        `codec ${codec.name} trains from a latent cache, and none was given`,
        'pass latentShardUris (runTrainingChunk and the train workflow build the cache with buildLatentCache).',
      );
    }
    const optimizer = new AdamW(params, {
      beta1: cfg.optim.beta1,
      beta2: cfg.optim.beta2,
      eps: cfg.optim.eps,
      weightDecay: cfg.optim.weightDecay,
    });
    const ema = cfg.optim.ema.enabled ? new WeightEma(params, cfg.optim.ema.decay, cfg.optim.ema.warmup) : null;
    const o = cfg.objective;
    const schedule = ddpmSchedule(o.betaSchedule, o.betaStart, o.betaEnd, o.trainTimesteps);
    const latents =
      codec.sha256 !== null
        ? {
            shardUris: src.latentShardUris!,
            vaeSha256: codec.sha256,
            shape: [den.size, den.size, den.channels] as [number, number, number],
          }
        : undefined;
    const loaderOpts = {
      seed: cfg.seed,
      captionColumn: cfg.data.captionColumn,
      resolution: cfg.resolution,
      prefetch: true,
      latents,
    };
    const data = openSampleSource(src.storage, src.shardUris, loaderOpts, ck?.state.data);
    const rng = ck ? new Rng(ck.state.rng) : Rng.derive(cfg.seed, 'train');
    const session = new TrainingSession(
      src,
      spec,
      tokenizer,
      codec,
      ownsCodec,
      params,
      optimizer,
      ema,
      rng,
      data,
      schedule,
    );
    if (ck) {
      for (const p of params.list()) {
        const e = ck.files['model.safetensors'].tensors.get(p.name);
        if (!e) throw new Error(`model.safetensors in ${ck.uri} lacks ${p.name}`);
        params.assign(p.name, entryToFloat32(e), e.shape);
      }
      optimizer.load(ck.files['optimizer.safetensors']);
      ema?.load(ck.files['ema.safetensors']);
      session.step = ck.state.step;
      session.samplesSeen = ck.state.samplesSeen;
      session.losses = [...ck.state.losses];
      session.lossesFromStep = ck.state.lossesFromStep;
    }
    return session;
  }

  /** One optimiser step (gradAccumSteps micro-batches). Throws NonFiniteLossError before updating on NaN/Inf. */
  async trainStep(lastGoodCheckpoint: string | null): Promise<StepResult> {
    const cfg = this.src.config;
    const A = cfg.optim.gradAccumSteps;
    const vars = this.params.list().map((p) => p.variable);
    // Gradients accumulate as one flat vector per parameter group: sum over micro-batches of g / A.
    let accum: FlatByGroup = new Map();
    let loss = 0;
    let diffusion = 0;
    let prx = 0;
    let prxVar = 0;
    let prxCorr = 0;
    let prxGradShare = 0;
    const dropoutKey = this.rng.nextU32();
    try {
      for (let micro = 0; micro < A; micro++) {
        const m = await this.microStep(vars, Rng.derive(dropoutKey, 'micro', micro).nextU32());
        loss += m.loss / A;
        diffusion += m.diffusion / A;
        prx += m.prx / A;
        prxVar += m.prxVar / A;
        prxCorr += m.prxCorr / A;
        prxGradShare += m.prxGradShare / A;
        const flat = flattenGrads(this.params, m.grads);
        for (const g of m.grads.values()) g.dispose();
        const next: FlatByGroup = new Map();
        for (const [group, g] of flat) {
          const prev = accum.get(group);
          next.set(
            group,
            A === 1 ? g : tf.tidy(() => (prev ? tf.add(prev, tf.div(g, A)) : tf.div(g, A)) as tf.Tensor1D),
          );
          if (A !== 1) g.dispose();
          prev?.dispose();
        }
        accum = next;
      }
      const nextStep = this.step + 1;
      if (!Number.isFinite(loss))
        throw new NonFiniteLossError(
          nextStep,
          `loss is ${loss} (diffusion ${diffusion}, prx ${prx})`,
          lastGoodCheckpoint,
        );
      const lr = {
        denoiser: learningRateAt(this.optimizer.step, { ...this.scheduleOptions(), peak: cfg.optim.lr }),
        text: learningRateAt(this.optimizer.step, {
          ...this.scheduleOptions(),
          peak: cfg.optim.lr * cfg.optim.textLrRatio,
        }),
      };
      const { norm: gradNorm, coef } = globalNormClip(accum, cfg.optim.gradClip);
      if (!Number.isFinite(gradNorm))
        throw new NonFiniteLossError(nextStep, `gradient norm is ${gradNorm} (loss ${loss})`, lastGoodCheckpoint);
      const updated = this.optimizer.applyFlat(accum, lr, coef);
      try {
        this.ema?.update(updated);
      } finally {
        for (const t of updated.values()) t.dispose();
      }
      this.step = nextStep;
      this.samplesSeen += A * cfg.optim.microBatchSize;
      this.losses.push(loss);
      const excess = this.losses.length - cfg.checkpoint.lossTail;
      if (excess > 0) {
        this.losses.splice(0, excess);
        this.lossesFromStep += excess;
      }
      return { step: this.step, loss, diffusion, prx, prxVar, prxCorr, prxGradShare, gradNorm, lr };
    } finally {
      for (const g of accum.values()) g.dispose();
    }
  }

  private async microStep(
    vars: tf.Variable[],
    dropoutKey: number,
  ): Promise<{
    loss: number;
    diffusion: number;
    prx: number;
    prxVar: number;
    prxCorr: number;
    prxGradShare: number;
    grads: Map<string, tf.Tensor>;
  }> {
    const cfg = this.src.config;
    const B = cfg.optim.microBatchSize;
    const batch = await this.data.nextBatch(B);
    const den = this.spec.denoiser;
    const { captions, draw } = drawMicroBatch(
      this.rng,
      batch.captions,
      den.size * den.size * den.channels,
      cfg.objective,
      this.schedule,
    );
    const tokens = this.tokenizer.encode(captions);
    // Pixels (identity codec) or the latent cache's latents: the stream already holds the denoiser's input space.
    const x0 = tf.tensor4d(batch.images, [B, den.size, den.size, den.channels]);
    const drop = new DropoutStream(dropoutKey);
    const parts: tf.Scalar[] = [];
    let prxGradShare = 0;
    // PRX's share of the gradient on the prediction comes from the same backward pass: the diffusion
    // and PRX terms read two handles of the prediction, whose gradients are the two terms' own.
    const share = prxActive(cfg.objective) && draw.prxMask.some((m) => m > 0);
    const out = tf.tidy(() => {
      const xt = noisyLatents(x0, draw);
      const ctxMask = attentionMask(tokens.mask, B, den.heads, 1, tokens.maxTokens, false);
      const watch: tf.Tensor[] = [];
      let predOut: tf.Tensor4D | null = null;
      const { value, grads, watched } = variableGrads(
        () => {
          const context = encodeText(this.params, this.spec.text, tokens, drop);
          const pred = runDenoiser(
            this.params,
            den,
            { latents: xt, timesteps: draw.modelTimesteps, context, contextMask: ctxMask },
            drop,
          );
          if (share) watch.push(tf.clone(pred), tf.clone(pred));
          const [forDiffusion, forPrx] = (share ? watch : [pred, pred]) as [tf.Tensor4D, tf.Tensor4D];
          const terms = objectiveTerms(forDiffusion, x0, xt, draw, cfg.objective, this.src.prxTargets, forPrx);
          parts.push(tf.keep(terms.diffusion), tf.keep(terms.prx), tf.keep(terms.prxVar), tf.keep(terms.prxCorr));
          if (share) predOut = tf.keep(pred);
          return terms.loss;
        },
        vars,
        watch,
      );
      if (share) {
        const [gDiffusion, gPrx] = watched;
        prxGradShare =
          gDiffusion && gPrx
            ? gradientShare(gDiffusion, gPrx)
            : // tfjs's own variableGrads ran (no tape access): the two gradients in passes of their own.
              prxGradientShare(predOut!, x0, xt, draw, cfg.objective, this.src.prxTargets);
      }
      (predOut as tf.Tensor | null)?.dispose();
      return { value, grads };
    });
    x0.dispose();
    const [loss, diffusion, prx, prxVar, prxCorr] = (await Promise.all(
      [out.value, ...parts].map(async (t) => (await t.data())[0]!),
    )) as [number, number, number, number, number];
    out.value.dispose();
    for (const t of parts) t.dispose();
    const grads = new Map<string, tf.Tensor>();
    for (const [varName, g] of Object.entries(out.grads)) {
      const p = this.params.byVariableName(varName);
      if (!p) throw new Error(`gradient for unknown variable ${varName}`);
      grads.set(p.name, g);
    }
    return { loss, diffusion, prx, prxVar, prxCorr, prxGradShare, grads };
  }

  private scheduleOptions() {
    const o = this.src.config.optim;
    return {
      totalSteps: this.src.config.totalSteps,
      minLr: o.minLr,
      warmupFraction: o.warmupFraction,
      constantFraction: o.constantFraction,
    };
  }

  /** Write a checkpoint of the current state (tensor files, then state.json). */
  async saveCheckpoint(lastGoodCheckpoint: string | null): Promise<WrittenCheckpoint> {
    const { storage, runUri, config, backend, shardUris } = this.src;
    await this.assertWeightsFinite(lastGoodCheckpoint);
    // Each file is written from the device in small chunks (training/tensor-source.ts), not from host copies of all three.
    return writeCheckpoint(
      storage,
      runUri,
      {
        format: CHECKPOINT_FORMAT,
        step: this.step,
        rng: this.rng.state(),
        data: this.data.position(),
        samplesSeen: this.samplesSeen,
        config,
        backend: backend.name,
        precision: backend.precision,
        tokenizer: this.tokenizer.name,
        codec: this.codec.name,
        codecSha256: this.codec.sha256,
        datasetShardsSha256: shardListSha256(shardUris),
        losses: this.losses,
        lossesFromStep: this.lossesFromStep,
      },
      {
        'model.safetensors': {
          tensors: this.params.tensorSources(),
          metadata: { format: 'pt', kiln_step: String(this.step) },
        },
        'ema.safetensors': {
          tensors: (this.ema ?? this.params).tensorSources(),
          metadata: { format: 'pt', updates: String(this.ema?.updates ?? 0) },
        },
        'optimizer.safetensors': {
          tensors: this.optimizer.tensorSources(),
          metadata: { step: String(this.optimizer.step) },
        },
      },
    );
  }

  /**
   * Weights and EMA all finite, checked on the device first (sum of x * 0 per tensor is NaN iff an
   * element is NaN or infinite; one read); when not, the host check names the weight.
   */
  private async assertWeightsFinite(lastGoodCheckpoint: string | null): Promise<void> {
    const tensors = [...this.params.list().map((p) => p.variable as tf.Tensor), ...(this.ema?.vectors() ?? [])];
    const probe = tf.tidy(() => tf.addN(tensors.map((t) => tf.sum(tf.mul(t, 0)))));
    const ok = Number.isFinite((await probe.data())[0]!);
    probe.dispose();
    if (ok) return;
    assertFinite(await this.params.toNamedArrays(), this.step, lastGoodCheckpoint);
    if (this.ema) assertFinite(await this.ema.toNamedArrays(), this.step, lastGoodCheckpoint);
  }

  dispose(): void {
    this.data.close();
    this.ema?.dispose();
    this.optimizer.dispose();
    this.params.dispose();
    if (this.ownsCodec) void this.codec.dispose().catch(() => undefined);
  }
}

/** Never write a checkpoint holding NaN/Inf weights (the host check, which names the weight). */
function assertFinite(arrays: NamedArray[], step: number, lastGoodCheckpoint: string | null): void {
  for (const a of arrays) {
    for (let i = 0; i < a.data.length; i++) {
      if (!Number.isFinite(a.data[i]!))
        throw new NonFiniteLossError(step, `weight ${a.name} holds ${a.data[i]}`, lastGoodCheckpoint);
    }
  }
}
