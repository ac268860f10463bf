/**
 * Every fault the crawler must survive, end to end at the library level: URL list -> plan ->
 * crawlShardToParquet -> Parquet read back by pyarrow. Each input row must come out exactly once
 * with the expected status and reason; successes have the right dimensions and the sha256 of the
 * bytes the server sent.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { LocalStorage } from '../../infra/storage.js';
import { planCrawl } from '../../datasets/crawl/plan.js';
import { crawlShardToParquet } from '../../datasets/crawl/crawl-shard.js';
import { DatasetLayout } from '../../datasets/shards/layout.js';
import { readShardRows } from '../../datasets/shards/reader.js';
import type { ShardStats } from '../../datasets/shards/stats.js';
import { tempDir } from '../helpers/env.js';
import { startFixtureServer, type FixtureServer } from './fixture-server.js';
import { TEST_CRAWL_OPTIONS, pyarrowDescribe, writeJsonl } from './helpers.js';

interface Case {
  path: string;
  status: string;
  reason?: string;
  /** Expected original dimensions (successes and size-based failures). */
  original?: [number, number];
  /** Fixture image whose bytes the row's sha256 must hash. */
  image?: string;
  hits?: number;
}

const CASES: Case[] = [
  { path: '/img/landscape.jpg', status: 'success', original: [640, 480], image: '/img/landscape.jpg', hits: 1 },
  { path: '/img/portrait.jpg', status: 'success', original: [300, 500], image: '/img/portrait.jpg' },
  { path: '/img/square.png', status: 'success', original: [200, 200], image: '/img/square.png' },
  { path: '/img/alpha.png', status: 'success', original: [320, 240], image: '/img/alpha.png' },
  { path: '/img/wide.webp', status: 'success', original: [1024, 256], image: '/img/wide.webp' },
  { path: '/img/small.jpg', status: 'filtered', reason: 'image_too_small', original: [32, 24] },
  { path: '/missing.jpg', status: 'failed_to_download', reason: 'http_404', hits: 1 },
  { path: '/flaky500/a.jpg', status: 'success', original: [640, 480], image: '/img/landscape.jpg', hits: 2 },
  { path: '/always503/a.jpg', status: 'failed_to_download', reason: 'http_503', hits: 3 },
  { path: '/ratelimited/a.jpg', status: 'success', original: [640, 480], image: '/img/landscape.jpg', hits: 2 },
  { path: '/ratelimited-long/a.jpg', status: 'failed_to_download', reason: 'http_429', hits: 1 },
  { path: '/slow.jpg', status: 'failed_to_download', reason: 'timeout', hits: 3 },
  { path: '/truncated.jpg', status: 'failed_to_resize', reason: 'decode_error', original: [640, 480] },
  { path: '/cut-connection.jpg', status: 'failed_to_download', reason: 'connection_closed' },
  { path: '/text.txt', status: 'failed_to_resize', reason: 'not_an_image' },
  { path: '/html-as.jpg', status: 'failed_to_resize', reason: 'not_an_image' },
  { path: '/empty.jpg', status: 'failed_to_download', reason: 'empty_body' },
  { path: '/bomb.png', status: 'failed_to_resize', reason: 'pixel_limit', original: [4000, 4000] },
  { path: '/huge-header.png', status: 'failed_to_resize', reason: 'pixel_limit', original: [100000, 100000] },
  { path: '/big.bin', status: 'failed_to_download', reason: 'too_large' },
  { path: '/robots/noai.jpg', status: 'filtered', reason: 'x_robots_tag' },
  { path: '/robots/other-bot.jpg', status: 'success', original: [640, 480], image: '/img/landscape.jpg' },
  { path: '/redirect/chain/3', status: 'success', original: [300, 500], image: '/img/portrait.jpg' },
  { path: '/redirect/chain/8', status: 'failed_to_download', reason: 'too_many_redirects' },
  { path: '/redirect/loop-a', status: 'failed_to_download', reason: 'redirect_loop' },
  { path: '/redirect/private', status: 'failed_to_download', reason: 'blocked_address' },
  { path: '/redirect/metadata', status: 'failed_to_download', reason: 'blocked_address' },
];

/** Rows that are not paths on the fixture server. */
const RAW: { url: (base: string) => string; status: string; reason: string }[] = [
  { url: () => 'http://10.1.2.3/x.jpg', status: 'failed_to_download', reason: 'blocked_address' },
  {
    url: (b) => b.replace('127.0.0.1', '[::1]') + '/img/landscape.jpg',
    status: 'failed_to_download',
    reason: 'blocked_address',
  },
  { url: () => 'ftp://example.invalid/a.jpg', status: 'failed_to_download', reason: 'unsupported_scheme' },
  { url: () => 'not a url', status: 'failed_to_download', reason: 'invalid_url' },
  { url: () => '', status: 'failed_to_download', reason: 'invalid_url' },
  { url: (b) => `${b}/img/landscape.jpg`, status: 'filtered', reason: 'duplicate_url' },
];

describe('crawl fault cases (library level)', () => {
  let server: FixtureServer;
  const tmp = tempDir('kiln-crawl-faults-');
  before(async () => {
    server = await startFixtureServer();
  });
  after(async () => {
    await server.close();
    tmp.cleanup();
  });

  it('records every input row exactly once with the expected status, reason, dimensions and sha256', async () => {
    const storage = new LocalStorage(`${tmp.path}/data`);
    const base = server.baseUrl;
    const urls = [...CASES.map((c) => `${base}${c.path}`), ...RAW.map((r) => r.url(base))];
    const list = writeJsonl(
      tmp.path,
      'urls.jsonl',
      urls.map((url, i) => ({ url, caption: `caption ${i}`, source: `s${i}` })),
    );
    const { plan } = await planCrawl(
      storage,
      { datasetName: 'faults', sources: [{ path: list }], rowsPerShard: 12, options: TEST_CRAWL_OPTIONS },
      0,
    );
    assert.equal(plan.rows, urls.length);
    assert.equal(plan.shardCount, Math.ceil(urls.length / 12));
    assert.equal(plan.duplicates, 1);
    assert.deepEqual(plan.extraColumns, ['source']);

    const layout = new DatasetLayout(storage, 'faults', plan.version);
    const stats: ShardStats[] = [];
    for (let i = 0; i < plan.shardCount; i++) {
      const out = await crawlShardToParquet(storage, {
        datasetName: 'faults',
        version: plan.version,
        shardIndex: i,
        extraColumns: plan.extraColumns,
        options: plan.options,
        rowGroupSize: 5,
      });
      assert.equal(out.skipped, false);
      stats.push(JSON.parse(await storage.readText(layout.statsUri(i))) as ShardStats);
    }

    const rows = new Map<string, Awaited<ReturnType<typeof collect>>[number]>();
    const collect = async (uri: string) => {
      const out = [];
      for await (const r of readShardRows(storage, uri)) out.push(r);
      return out;
    };
    for (let i = 0; i < plan.shardCount; i++) {
      for (const r of await collect(layout.shardUri(i))) {
        assert.ok(!rows.has(r.key), `key ${r.key} appears twice`);
        rows.set(r.key, r);
      }
    }
    assert.equal(rows.size, urls.length, 'every input row appears exactly once');
    const byUrl = new Map(
      [...rows.values()].filter((r) => !r.error_message?.startsWith('duplicate_url')).map((r) => [r.url, r]),
    );
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    const image = (p: string) => server.images.find((im) => im.path === p)!;

    for (const c of CASES) {
      const r = byUrl.get(`${base}${c.path}`);
      assert.ok(r, `row for ${c.path}`);
      assert.equal(r.status, c.status, `${c.path}: status (error: ${r.error_message})`);
      if (c.reason)
        assert.ok(r.error_message?.startsWith(`${c.reason}:`), `${c.path}: reason ${c.reason}, got ${r.error_message}`);
      else assert.equal(r.error_message, null);
      if (c.original) assert.deepEqual([r.original_width, r.original_height], c.original, `${c.path}: original dims`);
      if (c.status === 'success') {
        assert.deepEqual([r.width, r.height], [64, 64], `${c.path}: center_crop to 64`);
        assert.ok(r.jpg && r.jpg[0] === 0xff && r.jpg[1] === 0xd8, `${c.path}: stored JPEG`);
      } else {
        assert.equal(r.jpg, null);
      }
      if (c.image) assert.equal(r.sha256, sha(image(c.image).bytes), `${c.path}: sha256 of original bytes`);
      if (c.hits !== undefined) assert.equal(server.hits(c.path), c.hits, `${c.path}: requests`);
      assert.equal(r.extra?.source?.startsWith('s'), true);
    }
    // The truncated image was downloaded (sha256 of what arrived) but could not be decoded.
    const truncated = byUrl.get(`${base}/truncated.jpg`)!;
    assert.match(truncated.sha256 ?? '', /^[0-9a-f]{64}$/);
    for (const raw of RAW.slice(0, 5)) {
      const r = byUrl.get(raw.url(base))!;
      assert.equal(r.status, raw.status, `${raw.url(base)}: status`);
      assert.ok(
        r.error_message?.startsWith(`${raw.reason}:`) || r.error_message === raw.reason,
        `${raw.url(base)}: ${r.error_message}`,
      );
    }
    const dup = [...rows.values()].filter((r) => r.url === `${base}/img/landscape.jpg`);
    assert.equal(dup.length, 2);
    assert.deepEqual(dup.map((r) => r.status).sort(), ['filtered', 'success']);
    assert.equal(server.hits('/img/landscape.jpg'), 1, 'a duplicate URL is fetched once');

    // Stats agree with the rows.
    const total = (s: string) => stats.reduce((n, st) => n + (st.countsByStatus as Record<string, number>)[s]!, 0);
    for (const s of ['success', 'failed_to_download', 'failed_to_resize', 'filtered']) {
      assert.equal(total(s), [...rows.values()].filter((r) => r.status === s).length, `stats count of ${s}`);
    }
    assert.equal(
      stats.reduce((n, st) => n + (st.countsByReason.http_404 ?? 0), 0),
      1,
    );
    assert.ok(stats.reduce((n, st) => n + st.retries, 0) >= 2 + 2 + 1 + 1, 'retries counted');

    // An independent reader (pyarrow) sees the same schema and rows.
    for (let i = 0; i < plan.shardCount; i++) {
      const d = pyarrowDescribe(storage.localPath(layout.shardUri(i)));
      assert.deepEqual(d.schema.slice(0, 11), [
        ['key', 'string', false],
        ['url', 'string', false],
        ['caption', 'string', true],
        ['status', 'string', false],
        ['error_message', 'string', true],
        ['width', 'int32', true],
        ['height', 'int32', true],
        ['original_width', 'int32', true],
        ['original_height', 'int32', true],
        ['sha256', 'string', true],
        ['jpg', 'binary', true],
      ]);
      assert.deepEqual(d.schema[11], ['source', 'string', true]);
      assert.equal(d.rows, stats[i]!.rows);
      assert.equal(d.metadata['kiln.schema_version'], '1');
      assert.ok(d.compression.includes('ZSTD'));
      for (const [key, pr] of Object.entries(d.byKey)) {
        const r = rows.get(key)!;
        assert.equal(pr.status, r.status);
        assert.equal(pr.sha256, r.sha256);
        assert.equal(pr.jpg_len, r.jpg?.byteLength ?? null);
      }
    }
  });
});
