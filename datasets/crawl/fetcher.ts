/**
 * Downloading one image URL with undici: a keep-alive Agent with per-origin connection limits and
 * an SSRF-guarded DNS lookup, a deadline per attempt, manual redirects (every hop is re-checked),
 * a byte cap, X-Robots-Tag, and bounded retries with exponential backoff + jitter for retryable
 * failures only (timeouts, 429 honouring Retry-After, 5xx). Failures come back as data.
 */
import { isIP } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, type Dispatcher } from 'undici';
import type { CrawlOptions } from './options.js';
import type { FailureReason, RowFailure } from './failures.js';
import { AddressPolicy, createGuardedLookup } from './ssrf.js';
import { disallowingRobotsDirective, userAgentToken } from './robots.js';

export type FetchOutcome =
  | { ok: true; bytes: Buffer; finalUrl: string; attempts: number }
  | { ok: false; failure: RowFailure; attempts: number };

type AttemptResult =
  | { kind: 'ok'; bytes: Buffer; finalUrl: string }
  | { kind: 'fail'; failure: RowFailure }
  | { kind: 'retry'; failure: RowFailure; retryAfterMs?: number };

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const fail = (reason: FailureReason, detail: string): AttemptResult => ({ kind: 'fail', failure: { reason, detail } });

/** Retry-After as ms (delta-seconds or HTTP-date); undefined when absent or unparsable. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v.trim() === '') return undefined;
  if (/^\s*\d+\s*$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

function codesOf(err: unknown): string[] {
  const codes: string[] = [];
  for (
    let e = err as { code?: unknown; cause?: unknown; name?: unknown } | undefined, i = 0;
    e && i < 8;
    e = e.cause as typeof e, i++
  ) {
    if (typeof e.code === 'string') codes.push(e.code);
    if (typeof e.name === 'string') codes.push(e.name);
  }
  return codes;
}

export class ImageFetcher {
  private readonly agent: Agent;
  private readonly policy: AddressPolicy;
  private readonly uaToken: string;

  constructor(private readonly opts: CrawlOptions) {
    this.policy = new AddressPolicy(opts.allowAddresses);
    this.uaToken = userAgentToken(opts.userAgent);
    this.agent = new Agent({
      connections: opts.connectionsPerHost,
      keepAliveTimeout: 10_000,
      keepAliveMaxTimeout: 60_000,
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
      connect: { timeout: opts.timeoutMs, lookup: createGuardedLookup(this.policy) } as Agent.Options['connect'],
    });
  }

  /** Download `url` (following redirects, retrying retryable failures). Rejects only when `signal` aborts. */
  async fetch(url: string, signal?: AbortSignal): Promise<FetchOutcome> {
    for (let attempt = 1; ; attempt++) {
      const r = await this.attempt(url, signal);
      if (r.kind === 'ok') return { ok: true, bytes: r.bytes, finalUrl: r.finalUrl, attempts: attempt };
      if (r.kind === 'fail' || attempt > this.opts.retries) return { ok: false, failure: r.failure, attempts: attempt };
      let delay = Math.min(this.opts.retryMaxDelayMs, this.opts.retryBaseDelayMs * 2 ** (attempt - 1));
      delay = delay / 2 + Math.random() * (delay / 2);
      if (r.retryAfterMs !== undefined) {
        if (r.retryAfterMs > this.opts.retryMaxDelayMs) {
          return {
            ok: false,
            failure: {
              reason: r.failure.reason,
              detail: `${r.failure.detail}; Retry-After ${Math.ceil(r.retryAfterMs / 1000)}s exceeds retryMaxDelayMs`,
            },
            attempts: attempt,
          };
        }
        delay = r.retryAfterMs;
      }
      await sleep(delay, undefined, { signal });
    }
  }

  /** One attempt under one deadline (a plain timer: AbortSignal.timeout/any cost more per request). */
  private async attempt(startUrl: string, outer?: AbortSignal): Promise<AttemptResult> {
    const ac = new AbortController();
    const timer = setTimeout(
      () => ac.abort(new DOMException(`no response within ${this.opts.timeoutMs} ms`, 'TimeoutError')),
      this.opts.timeoutMs,
    );
    const onOuter = () => ac.abort(outer?.reason);
    outer?.addEventListener('abort', onOuter, { once: true });
    try {
      return await this.follow(startUrl, ac.signal, outer);
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onOuter);
    }
  }

  private async follow(startUrl: string, signal: AbortSignal, outer?: AbortSignal): Promise<AttemptResult> {
    const visited = new Set<string>();
    let current = startUrl;
    for (let hop = 0; ; hop++) {
      let url: URL;
      try {
        url = new URL(current);
      } catch {
        return fail(
          hop === 0 ? 'invalid_url' : 'bad_redirect',
          `cannot parse ${JSON.stringify(current.slice(0, 200))}`,
        );
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        return fail(hop === 0 ? 'unsupported_scheme' : 'bad_redirect', `scheme ${url.protocol} is not http(s)`);
      const host = url.hostname.replace(/^\[|\]$/g, '');
      if (isIP(host)) {
        const v = this.policy.check(host);
        if (!v.allowed) return fail('blocked_address', v.why);
      }
      visited.add(url.href);
      let res: Dispatcher.ResponseData;
      try {
        res = await this.agent.request({
          origin: url.origin,
          path: `${url.pathname}${url.search}`,
          method: 'GET',
          signal,
          headers: {
            'user-agent': this.opts.userAgent,
            accept: 'image/avif,image/webp,image/png,image/jpeg,image/*;q=0.9,*/*;q=0.5',
          },
        });
      } catch (err) {
        return this.classifyError(err, outer);
      }
      const { statusCode, headers, body } = res;
      if (REDIRECTS.has(statusCode)) {
        await body.dump().catch(() => undefined);
        const location = headers.location;
        const loc = Array.isArray(location) ? location[0] : location;
        if (!loc) return fail('bad_redirect', `HTTP ${statusCode} without Location`);
        let next: string;
        try {
          next = new URL(loc, url).href;
        } catch {
          return fail('bad_redirect', `cannot parse Location ${JSON.stringify(loc.slice(0, 200))}`);
        }
        if (visited.has(next)) return fail('redirect_loop', `${next} was already visited`);
        if (hop + 1 > this.opts.maxRedirects)
          return fail('too_many_redirects', `more than ${this.opts.maxRedirects} redirects`);
        current = next;
        continue;
      }
      if (statusCode >= 400 || statusCode < 200) {
        await body.dump().catch(() => undefined);
        const failure: RowFailure = { reason: `http_${statusCode}`, detail: `HTTP ${statusCode} from ${url.host}` };
        if (statusCode === 429)
          return { kind: 'retry', failure, retryAfterMs: parseRetryAfter(headers['retry-after']) };
        if (statusCode >= 500)
          return {
            kind: 'retry',
            failure,
            retryAfterMs: statusCode === 503 ? parseRetryAfter(headers['retry-after']) : undefined,
          };
        return { kind: 'fail', failure };
      }
      if (this.opts.honorRobotsTag) {
        const d = disallowingRobotsDirective(
          headers['x-robots-tag'],
          this.uaToken,
          this.opts.disallowedRobotsDirectives,
        );
        if (d) {
          await body.dump().catch(() => undefined);
          return fail('x_robots_tag', `X-Robots-Tag ${d}`);
        }
      }
      return this.readBody(body, headers['content-length'], url.href, outer);
    }
  }

  private async readBody(
    body: Dispatcher.ResponseData['body'],
    lengthHeader: string | string[] | undefined,
    finalUrl: string,
    outer?: AbortSignal,
  ): Promise<AttemptResult> {
    const cap = this.opts.maxBytes;
    const declared = Number(Array.isArray(lengthHeader) ? lengthHeader[0] : (lengthHeader ?? NaN));
    if (declared > cap) {
      body.destroy();
      return fail('too_large', `Content-Length ${declared} exceeds ${cap} bytes`);
    }
    try {
      let bytes: Buffer;
      if (Number.isInteger(declared) && declared >= 0) {
        // Declared and within the cap: one buffer, no per-chunk async iteration. undici fails
        // the body when it is shorter or longer than its Content-Length.
        const u8 = await body.bytes();
        bytes = Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
      } else {
        const chunks: Buffer[] = [];
        let total = 0;
        for await (const chunk of body as AsyncIterable<Buffer>) {
          total += chunk.length;
          if (total > cap) {
            body.destroy();
            return fail('too_large', `body exceeds ${cap} bytes`);
          }
          chunks.push(chunk);
        }
        bytes = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
      }
      if (bytes.length === 0) return fail('empty_body', 'HTTP 200 with an empty body');
      return { kind: 'ok', bytes, finalUrl };
    } catch (err) {
      return this.classifyError(err, outer);
    }
  }

  private classifyError(err: unknown, outer?: AbortSignal): AttemptResult {
    if (outer?.aborted) throw outer.reason ?? err;
    const codes = codesOf(err);
    const has = (...c: string[]) => c.some((x) => codes.includes(x));
    const detail = (err as Error)?.message ?? String(err);
    if (has('KILN_BLOCKED_ADDRESS')) return fail('blocked_address', detail);
    if (
      has(
        'TimeoutError',
        'AbortError',
        'UND_ERR_ABORTED',
        'UND_ERR_HEADERS_TIMEOUT',
        'UND_ERR_BODY_TIMEOUT',
        'UND_ERR_CONNECT_TIMEOUT',
        'ETIMEDOUT',
      )
    ) {
      return {
        kind: 'retry',
        failure: { reason: 'timeout', detail: `no complete response within ${this.opts.timeoutMs} ms` },
      };
    }
    if (has('UND_ERR_RES_CONTENT_LENGTH_MISMATCH')) return fail('truncated_body', detail);
    if (has('ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'EAI_NODATA')) return fail('dns_error', detail);
    if (has('UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE', 'UND_ERR_CLOSED')) return fail('connection_closed', detail);
    if (has('UND_ERR_RES_EXCEEDED_MAX_SIZE')) return fail('too_large', detail);
    if (has('UND_ERR_INVALID_ARG')) return fail('invalid_url', detail);
    return fail('connection_error', `${codes[0] ?? 'error'}: ${detail}`);
  }

  /** Close all keep-alive connections. */
  async close(): Promise<void> {
    await this.agent.close();
  }
}
