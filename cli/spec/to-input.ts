/** Map a validated spec (snake_case, user-facing) to the pipeline workflow's input (stage inputs). */
import type { PipelineInput, PipelineTrainInput } from '../../workflows/pipeline.js';
import type { TrainingConfigInput } from '../../training/config.js';
import type { PipelineSpec } from './schema.js';
import { referenceOf } from '../../eval/options.js';

export function pipelineInputFromSpec(spec: PipelineSpec): PipelineInput {
  const c = spec.crawl;
  const input: PipelineInput = {
    name: spec.name,
    crawl: {
      datasetName: spec.name,
      inputs: spec.sources.map((s) => (s.format ? { path: s.path, format: s.format } : s.path)),
      urlColumn: c.url_col,
      captionColumn: c.caption_col,
      ...(c.extra_cols ? { extraColumns: c.extra_cols } : {}),
      rowsPerShard: c.rows_per_shard,
      incremental: c.incremental,
      options: {
        imageSize: c.image_size,
        resizeMode: c.resize_mode,
        resizeOnlyIfBigger: c.resize_only_if_bigger,
        skipReencode: c.skip_reencode,
        maxPixels: c.max_pixels,
        encodeFormat: c.encode_format,
        encodeQuality: c.encode_quality,
        minImageSize: c.min_image_size,
        maxAspectRatio: c.max_aspect_ratio,
        timeoutMs: c.timeout_ms,
        retries: c.retries,
        concurrency: c.concurrency,
        honorRobotsTag: c.honor_robots_tag,
        allowAddresses: c.allow_addresses,
      },
    },
  };
  if (spec.dedup) input.dedup = {};
  if (spec.filter) {
    const f = spec.filter;
    input.filter = {
      clipModelDir: f.clip_model,
      captionerModelDir: f.captioner_model,
      ...(f.threshold !== undefined ? { threshold: f.threshold } : {}),
      keepTopFraction: f.keep_top_fraction,
      captionSource: f.threshold_caption,
      captionPrompt: f.caption_prompt,
      maxNewTokens: f.max_new_tokens,
      numBeams: f.num_beams,
      ...(f.caption_candidates !== undefined
        ? {
            captionCandidates: {
              count: f.caption_candidates,
              select: 'clip' as const,
              ...(f.caption_candidates_from !== undefined ? { from: f.caption_candidates_from } : {}),
              ...(f.caption_candidates_seed !== undefined ? { seed: f.caption_candidates_seed } : {}),
              ...(f.caption_candidates_temperature !== undefined
                ? { temperature: f.caption_candidates_temperature }
                : {}),
              ...(f.caption_candidates_top_p !== undefined ? { topP: f.caption_candidates_top_p } : {}),
            },
          }
        : {}),
      batchSize: f.batch_size,
      device: f.device,
    };
  }
  if (spec.train) input.train = trainInputFromSpec(spec);
  return input;
}

/** The train stage's input (dataset filled in by the pipeline from the last curation stage). */
export function trainInputFromSpec(spec: PipelineSpec): PipelineTrainInput {
  const t = spec.train!;
  const e = spec.eval;
  return {
    runName: t.run_name ?? `${spec.name}-train`,
    config: t.config as TrainingConfigInput,
    totalSteps: t.total_steps,
    chunkSteps: t.chunk_steps,
    ...(e
      ? {
          eval: {
            everySteps: e.every_steps,
            sampleCount: e.sample_count,
            patience: e.patience,
            minDelta: e.min_delta,
            ...(e.metric ? { metric: e.metric } : {}),
            extractorDir: e.extractor,
            seed: e.seed,
            ...(e.prompts ? { prompts: e.prompts } : {}),
            samplerSteps: e.sampler_steps,
            guidanceScale: e.guidance_scale,
            ...(e.reference ? referenceOf(e.reference) : {}),
            ...(e.reference_max_images ? { referenceMaxImages: e.reference_max_images } : {}),
            ...(spec.filter ? { clipModelDir: spec.filter.clip_model } : {}),
          },
        }
      : {}),
  };
}
