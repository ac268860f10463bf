/** SSRF address policy, X-Robots-Tag parsing, Retry-After parsing, user agent, DNS-time refusal. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AddressPolicy } from '../../datasets/crawl/ssrf.js';
import { disallowingRobotsDirective, userAgentToken } from '../../datasets/crawl/robots.js';
import { ImageFetcher, parseRetryAfter } from '../../datasets/crawl/fetcher.js';
import { resolveCrawlOptions } from '../../datasets/crawl/options.js';
import { USER_AGENT } from '../../infra/constants.js';
import { ConfigError } from '../../infra/errors.js';
import { startFixtureServer, type FixtureServer } from './fixture-server.js';

describe('AddressPolicy', () => {
  const deny = new AddressPolicy();
  const table: [string, boolean][] = [
    ['127.0.0.1', false],
    ['127.5.5.5', false],
    ['0.0.0.0', false],
    ['10.0.0.1', false],
    ['172.16.3.4', false],
    ['172.31.255.255', false],
    ['192.168.1.1', false],
    ['169.254.169.254', false],
    ['100.100.100.200', false],
    ['168.63.129.16', false],
    ['224.0.0.1', false],
    ['255.255.255.255', false],
    ['::1', false],
    ['::', false],
    ['fe80::1', false],
    ['fd00:ec2::254', false],
    ['fc00::1', false],
    ['::ffff:127.0.0.1', false],
    ['::ffff:7f00:1', false],
    ['::ffff:a9fe:a9fe', false],
    ['64:ff9b::a00:1', false],
    ['ff02::1', false],
    ['8.8.8.8', true],
    ['172.32.0.1', true],
    ['1.1.1.1', true],
    ['2606:4700:4700::1111', true],
    ['::ffff:8.8.8.8', true],
  ];
  for (const [ip, allowed] of table) {
    it(`${ip} -> ${allowed ? 'allowed' : 'refused'}`, () => assert.equal(deny.check(ip).allowed, allowed));
  }
  it('the allow list exempts addresses and CIDR ranges', () => {
    const p = new AddressPolicy(['127.0.0.1', '10.1.0.0/16', '::1']);
    assert.equal(p.check('127.0.0.1').allowed, true);
    assert.equal(p.check('127.0.0.2').allowed, false);
    assert.equal(p.check('10.1.200.3').allowed, true);
    assert.equal(p.check('10.2.0.1').allowed, false);
    assert.equal(p.check('::1').allowed, true);
    assert.equal(p.check('::ffff:127.0.0.1').allowed, true);
  });
  it('rejects malformed allow entries with a ConfigError', () => {
    assert.throws(() => new AddressPolicy(['localhost']), ConfigError);
    assert.throws(() => new AddressPolicy(['10.0.0.0/33']), ConfigError);
  });
});

describe('X-Robots-Tag', () => {
  const D = ['noai', 'noimageai', 'noindex', 'noimageindex'];
  const table: [string | string[] | undefined, string | undefined][] = [
    [undefined, undefined],
    ['noai', 'noai'],
    ['NoImageAI', 'noimageai'],
    ['nofollow, noindex', 'noindex'],
    ['nofollow', undefined],
    ['otherbot: noindex', undefined],
    ['kiln: noai', 'noai'],
    ['*: noimageindex', 'noimageindex'],
    [['nofollow', 'googlebot: noai', 'noimageai'], 'noimageai'],
    ['unavailable_after: 25 Jun 2010 15:00:00 PST', undefined],
  ];
  for (const [header, want] of table) {
    it(`${JSON.stringify(header)} -> ${want ?? 'allowed'}`, () =>
      assert.equal(disallowingRobotsDirective(header, userAgentToken(USER_AGENT), D), want));
  }
});

describe('Retry-After', () => {
  it('parses delta-seconds and HTTP dates', () => {
    assert.equal(parseRetryAfter('3'), 3000);
    assert.equal(parseRetryAfter(undefined), undefined);
    assert.equal(parseRetryAfter('soon'), undefined);
    const now = Date.parse('2025-01-01T00:00:00Z');
    assert.equal(parseRetryAfter('Wed, 01 Jan 2025 00:00:10 GMT', now), 10_000);
  });
});

describe('ImageFetcher against the fixture server', () => {
  let server: FixtureServer;
  before(async () => {
    server = await startFixtureServer();
  });
  after(async () => server.close());

  it('sends the identifiable user agent', async () => {
    const f = new ImageFetcher(resolveCrawlOptions({ allowAddresses: ['127.0.0.1'] }));
    try {
      const r = await f.fetch(`${server.baseUrl}/ua`);
      assert.ok(r.ok);
      assert.equal(r.bytes.toString(), USER_AGENT);
    } finally {
      await f.close();
    }
  });

  it('refuses loopback by default, at DNS time for host names and before connecting for IP literals', async () => {
    const f = new ImageFetcher(resolveCrawlOptions({}));
    try {
      const byName = await f.fetch(`http://localhost:${server.port}/img/landscape.jpg`);
      assert.ok(!byName.ok && byName.failure.reason === 'blocked_address', JSON.stringify(byName));
      const byIp = await f.fetch(`${server.baseUrl}/img/landscape.jpg`);
      assert.ok(!byIp.ok && byIp.failure.reason === 'blocked_address');
      assert.equal(server.hits('/img/landscape.jpg'), 0, 'no request reached the server');
    } finally {
      await f.close();
    }
  });

  it('honours X-Robots-Tag only when switched on', async () => {
    const f = new ImageFetcher(resolveCrawlOptions({ allowAddresses: ['127.0.0.1'], honorRobotsTag: false }));
    try {
      const r = await f.fetch(`${server.baseUrl}/robots/noai.jpg`);
      assert.ok(r.ok);
    } finally {
      await f.close();
    }
  });

  it('validates options with errors naming the field', () => {
    assert.throws(
      () => resolveCrawlOptions({ concurrency: 0 }),
      (e: unknown) => e instanceof ConfigError && /concurrency/.test(e.message),
    );
    assert.throws(
      () => resolveCrawlOptions({ resizeMode: 'stretch' as 'no' }),
      (e: unknown) => e instanceof ConfigError && /resizeMode/.test(e.message),
    );
  });
});
