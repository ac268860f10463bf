/**
 * Crawl options: one typed object (not an 18-argument constructor), with defaults and validation
 * that says exactly which field is wrong. Defaults follow img2dataset where it has the option.
 */
import { z } from 'zod';
import { USER_AGENT } from '../../infra/constants.js';
import { ConfigError } from '../../infra/errors.js';

export type ResizeMode = 'no' | 'keep_ratio' | 'keep_ratio_largest' | 'center_crop' | 'border';
export type EncodeFormat = 'jpeg' | 'webp';

export interface CrawlOptions {
  /** Downloads in flight per shard (p-queue concurrency). */
  concurrency: number;
  /** Keep-alive connections per origin (undici Agent `connections`). */
  connectionsPerHost: number;
  /** Deadline for one request attempt (connect + headers + whole body), ms. */
  timeoutMs: number;
  /** Attempts beyond the first for retryable failures (timeouts, 429, 5xx). */
  retries: number;
  /** First backoff delay, ms; doubles per attempt, with jitter. */
  retryBaseDelayMs: number;
  /** Longest wait before a retry, ms; a Retry-After beyond it fails the row instead of waiting. */
  retryMaxDelayMs: number;
  /** Byte cap on a response body. */
  maxBytes: number;
  /** Redirects followed per URL (each hop is checked like the first). */
  maxRedirects: number;
  userAgent: string;
  /**
   * Addresses or CIDR ranges exempt from the SSRF refusal (loopback, private, link-local and
   * metadata addresses are refused otherwise), e.g. ["127.0.0.1"] for a local test server.
   */
  allowAddresses: string[];
  /** Honour X-Robots-Tag directives in `disallowedRobotsDirectives` (default true). */
  honorRobotsTag: boolean;
  disallowedRobotsDirectives: string[];
  /** Target size in pixels (see resizeMode). */
  imageSize: number;
  resizeMode: ResizeMode;
  /**
   * Resize only images larger than imageSize (img2dataset's resize_only_if_bigger): by the smaller
   * side for keep_ratio / center_crop, by the larger side for border / keep_ratio_largest. Smaller
   * images are stored at their own size (re-encoded unless skipReencode), never upscaled or padded.
   */
  resizeOnlyIfBigger: boolean;
  /** Rows whose original smaller side is below this are filtered (0: off). */
  minImageSize: number;
  /** Rows whose original long/short side ratio exceeds this are filtered (0: off). */
  maxAspectRatio: number;
  /** Images with more pixels than this are refused before decoding (decompression bombs). */
  maxPixels: number;
  encodeFormat: EncodeFormat;
  /** 1..100. */
  encodeQuality: number;
  /** Store the original bytes when no resize is needed (no re-encoding). */
  skipReencode: boolean;
  /** Images decoded/resized at once (default: CPU count). */
  decodeConcurrency: number;
}

const positiveInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();

const optionsSchema = z
  .object({
    concurrency: positiveInt.max(4096),
    connectionsPerHost: positiveInt.max(1024),
    timeoutMs: positiveInt,
    retries: nonNegInt.max(20),
    retryBaseDelayMs: nonNegInt,
    retryMaxDelayMs: nonNegInt,
    maxBytes: positiveInt,
    maxRedirects: nonNegInt.max(50),
    userAgent: z.string().min(1),
    allowAddresses: z.array(z.string()),
    honorRobotsTag: z.boolean(),
    disallowedRobotsDirectives: z.array(z.string()),
    imageSize: positiveInt.max(16384),
    resizeMode: z.enum(['no', 'keep_ratio', 'keep_ratio_largest', 'center_crop', 'border']),
    resizeOnlyIfBigger: z.boolean(),
    minImageSize: nonNegInt,
    maxAspectRatio: z.number().nonnegative(),
    maxPixels: positiveInt,
    encodeFormat: z.enum(['jpeg', 'webp']),
    encodeQuality: z.number().int().min(1).max(100),
    skipReencode: z.boolean(),
    decodeConcurrency: positiveInt.max(256),
  })
  .strict();

/** Defaults; `decodeConcurrency` 0 here means "the CPU count" and is filled in by resolveCrawlOptions. */
export const DEFAULT_CRAWL_OPTIONS: Readonly<CrawlOptions> = Object.freeze({
  concurrency: 64,
  connectionsPerHost: 16,
  timeoutMs: 10_000,
  retries: 2,
  retryBaseDelayMs: 500,
  retryMaxDelayMs: 10_000,
  maxBytes: 20 * 1024 * 1024,
  maxRedirects: 5,
  userAgent: USER_AGENT,
  allowAddresses: [],
  honorRobotsTag: true,
  disallowedRobotsDirectives: ['noai', 'noimageai', 'noindex', 'noimageindex'],
  imageSize: 256,
  resizeMode: 'border',
  resizeOnlyIfBigger: false,
  minImageSize: 0,
  maxAspectRatio: 0,
  maxPixels: 89_478_485,
  encodeFormat: 'jpeg',
  encodeQuality: 95,
  skipReencode: false,
  decodeConcurrency: 0,
});

/** Options that change throughput only, not what ends up in a shard. */
export const THROUGHPUT_OPTIONS = ['concurrency', 'connectionsPerHost', 'decodeConcurrency'] as const;

/** Defaults + overrides, validated. Throws ConfigError naming the bad field. */
export function resolveCrawlOptions(overrides: Partial<CrawlOptions> = {}, cpuCount = 2): CrawlOptions {
  const merged = { ...DEFAULT_CRAWL_OPTIONS, ...stripUndefined(overrides) };
  if (merged.decodeConcurrency === 0) merged.decodeConcurrency = Math.max(1, cpuCount);
  const parsed = optionsSchema.safeParse(merged);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(options)'}: ${i.message}`).join('; ');
    throw new ConfigError(
      `invalid crawl options: ${issues}`,
      'fix the named crawl option(s); see datasets/crawl/options.ts for each field.',
    );
  }
  return parsed.data as CrawlOptions;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
