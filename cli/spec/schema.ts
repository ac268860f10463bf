/**
 * The pipeline spec (YAML or JSON): sources -> crawl -> filter/caption -> train + eval.
 * Keys are snake_case; every field is validated and an error names the field, what was given and
 * what is allowed. Stage option blocks are validated again, in full, by each stage.
 */
import { z } from 'zod';
import { EVAL_DEFAULTS } from '../../eval/options.js';

const name = z
  .string()
  .regex(/^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$/, 'use 1-100 letters, digits, ".", "_" or "-" (no "/", "..", spaces)');
const positiveInt = z.number().int().positive();

export const sourceSchema = z
  .object({
    path: z.string().min(1, 'give the path of a URL list (.csv, .tsv, .jsonl, .parquet, optionally .gz)'),
    format: z.enum(['csv', 'tsv', 'jsonl', 'parquet']).optional(),
  })
  .strict();

export const crawlSpecSchema = z
  .object({
    url_col: z.string().min(1).default('url'),
    caption_col: z.string().min(1).nullable().default('caption'),
    extra_cols: z.union([z.array(z.string()), z.literal('all')]).optional(),
    rows_per_shard: positiveInt.max(1_000_000).default(10_000),
    image_size: positiveInt.max(16_384).default(256),
    resize_mode: z.enum(['no', 'keep_ratio', 'keep_ratio_largest', 'center_crop', 'border']).default('border'),
    /** img2dataset's resize_only_if_bigger: images not larger than image_size keep their size (no upscaling or padding). */
    resize_only_if_bigger: z.boolean().default(false),
    /** Store the original bytes when no resize is needed (no re-encoding). */
    skip_reencode: z.boolean().default(false),
    /** Images with more pixels are refused before decoding (decompression bombs). */
    max_pixels: positiveInt.default(89_478_485),
    encode_format: z.enum(['jpeg', 'webp']).default('jpeg'),
    encode_quality: z.number().int().min(1).max(100).default(95),
    min_image_size: z.number().int().nonnegative().default(0),
    max_aspect_ratio: z.number().nonnegative().default(0),
    timeout_ms: positiveInt.default(10_000),
    retries: z.number().int().min(0).max(20).default(2),
    concurrency: positiveInt.max(4096).default(64),
    honor_robots_tag: z.boolean().default(true),
    allow_addresses: z.array(z.string()).default([]),
    /** Only URLs (and image bytes) that no earlier crawled dataset version holds; the rest are kept as `filtered`. */
    incremental: z.boolean().default(false),
  })
  .strict();

export const filterSpecSchema = z
  .object({
    clip_model: z.string().min(1, 'give the CLIP model directory (Hugging Face ONNX layout)'),
    /** Default 0.25, or none when keep_top_fraction is given (DataComp). */
    threshold: z.number().min(-1).max(1).optional(),
    keep_top_fraction: z.number().gt(0).max(1).nullable().default(null),
    threshold_caption: z.enum(['original', 'generated']).default('original'),
    captioner_model: z.string().min(1).nullable().default(null),
    caption_prompt: z.string().nullable().default(null),
    max_new_tokens: positiveInt.max(512).default(30),
    num_beams: positiveInt.max(16).default(1),
    /**
     * CLIP reranking (LAION-COCO): candidate captions per image, the highest CLIP score kept as
     * caption_generated. No default (omitted: off), so specs without it keep their job identity.
     */
    caption_candidates: positiveInt.max(16).optional(),
    /** beams (default): beam search's best num_beams hypotheses; sampling: seeded temperature/top-p samples. */
    caption_candidates_from: z.enum(['beams', 'sampling']).optional(),
    /** Sampling only: seed (default 0), temperature (default 1.0), top_p (default 1.0). */
    caption_candidates_seed: z.number().int().min(0).max(4_294_967_295).optional(),
    caption_candidates_temperature: z.number().gt(0).optional(),
    caption_candidates_top_p: z.number().gt(0).max(1).optional(),
    batch_size: positiveInt.max(4096).default(32),
    device: z.enum(['auto', 'cpu', 'cuda']).default('auto'),
  })
  .strict();

export const evalSpecSchema = z
  .object({
    every_steps: positiveInt,
    extractor: z.string().min(1, 'give the FID feature extractor directory'),
    /** Defaults: eval/options.ts EVAL_DEFAULTS, shared with the CLI and the eval activities (which check with its schema). */
    sample_count: positiveInt.min(2).max(100_000).default(EVAL_DEFAULTS.sampleCount),
    patience: positiveInt.max(1000).default(EVAL_DEFAULTS.patience),
    min_delta: z.number().nonnegative().default(EVAL_DEFAULTS.minDelta),
    /** Omitted: KID when sample_count < the extractor's feature_dim (FID is biased there), else FID. */
    metric: z.enum(['kid', 'fid', 'clip_score']).optional(),
    prompts: z.array(z.string()).optional(),
    seed: z.number().int().nonnegative().default(EVAL_DEFAULTS.seed),
    /** Reference images: a dataset version (name@vN) or a directory of images; default the training data. */
    reference: z.string().min(1).optional(),
    reference_max_images: positiveInt.min(2).default(EVAL_DEFAULTS.referenceMaxImages),
    sampler_steps: positiveInt.max(1000).default(EVAL_DEFAULTS.samplerSteps),
    guidance_scale: z.number().min(1).default(EVAL_DEFAULTS.guidanceScale),
  })
  .strict();

export const trainSpecSchema = z
  .object({
    run_name: name.optional(),
    total_steps: positiveInt,
    chunk_steps: positiveInt.default(100),
    /** Passed through to training/config.ts (validated there): model, objective, prx, optimizer, schedule... */
    config: z.record(z.string(), z.unknown()).default({}),
  })
  .strict();

export const pipelineSpecSchema = z
  .object({
    version: z.literal(1, 'the spec format version; only 1 exists'),
    name,
    sources: z.array(sourceSchema).min(1, 'list at least one URL list under sources'),
    crawl: crawlSpecSchema.default(crawlSpecSchema.parse({})),
    /** Exact dedup: rows whose image bytes (sha256) an earlier row of the crawled version holds become `filtered` in a new version. */
    dedup: z.boolean().optional(),
    filter: filterSpecSchema.optional(),
    train: trainSpecSchema.optional(),
    eval: evalSpecSchema.optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    if (s.filter) checkCaptionCandidates(s.filter, ctx);
    if (s.eval && !s.train)
      ctx.addIssue({
        code: 'custom',
        path: ['eval'],
        message: 'eval needs a train section (it evaluates training checkpoints)',
      });
    if (s.eval && s.train && s.eval.every_steps > s.train.total_steps) {
      ctx.addIssue({
        code: 'custom',
        path: ['eval', 'every_steps'],
        message: `every_steps (${s.eval.every_steps}) exceeds train.total_steps (${s.train.total_steps}): no evaluation would run`,
      });
    }
  });

type FilterSpec = z.output<typeof filterSpecSchema>;

/** Reranking needs a captioner (candidates) and, for beams, num_beams >= caption_candidates; sampling fields need sampling. */
function checkCaptionCandidates(f: FilterSpec, ctx: z.RefinementCtx): void {
  const issue = (field: string, message: string) => ctx.addIssue({ code: 'custom', path: ['filter', field], message });
  const sampling = ['caption_candidates_seed', 'caption_candidates_temperature', 'caption_candidates_top_p'] as const;
  const given = sampling.filter((k) => f[k] !== undefined);
  if (f.caption_candidates === undefined) {
    for (const k of [...(f.caption_candidates_from !== undefined ? ['caption_candidates_from'] : []), ...given])
      issue(
        k,
        `${k} is set but caption_candidates is not: set caption_candidates (e.g. 4) to turn reranking on, or remove ${k}`,
      );
    return;
  }
  if (f.captioner_model === null)
    issue(
      'captioner_model',
      `caption_candidates (${f.caption_candidates}) needs a captioner to make the candidates: ` +
        'set filter.captioner_model to a captioner model directory, or remove caption_candidates',
    );
  const from = f.caption_candidates_from ?? 'beams';
  if (from === 'beams') {
    if (f.caption_candidates > f.num_beams)
      issue(
        'caption_candidates',
        `caption_candidates (${f.caption_candidates}) exceeds num_beams (${f.num_beams}): beam search keeps only num_beams hypotheses; ` +
          `set filter.num_beams to at least ${f.caption_candidates}, lower caption_candidates, or use caption_candidates_from: sampling`,
      );
    for (const k of given)
      issue(k, `${k} only applies to sampled candidates: set caption_candidates_from: sampling, or remove ${k}`);
  }
}

export type PipelineSpec = z.output<typeof pipelineSpecSchema>;
