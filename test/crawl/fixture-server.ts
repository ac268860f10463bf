/**
 * A local HTTP server (127.0.0.1, port 0) for crawl tests: real JPEG/PNG/WebP images of varied
 * sizes, and every fault the crawler must survive. `urls` lists each case with the outcome the
 * crawler must record for it. Per-path hit counts let tests check retries.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { makeImage } from './images.js';

export interface FixtureImage {
  path: string;
  bytes: Buffer;
  width: number;
  height: number;
  format: 'jpeg' | 'png' | 'webp';
}

export interface FixtureServer {
  baseUrl: string;
  port: number;
  images: FixtureImage[];
  /** Requests seen per path (query excluded). */
  hits(path: string): number;
  close(): Promise<void>;
}

/** Images served under /img/<name>. */
const IMAGE_SPECS: [string, number, number, FixtureImage['format'], { alpha?: boolean }?][] = [
  ['landscape.jpg', 640, 480, 'jpeg'],
  ['portrait.jpg', 300, 500, 'jpeg'],
  ['square.png', 200, 200, 'png'],
  ['alpha.png', 320, 240, 'png', { alpha: true }],
  ['wide.webp', 1024, 256, 'webp'],
  ['small.jpg', 32, 24, 'jpeg'],
  ['exact.jpg', 256, 256, 'jpeg'],
];

/** The truncated JPEG: the first 60% of landscape.jpg, served with a matching Content-Length. */
export const TRUNCATED_FRACTION = 0.6;

async function buildBomb(): Promise<Buffer> {
  // A real decompression bomb relative to the tests' pixel limit: 4000x4000 of one grey (16 MP) in a few KB.
  return sharp({ create: { width: 4000, height: 4000, channels: 3, background: '#777777' } })
    .png({ compressionLevel: 9 })
    .toBuffer();
}

/** A PNG whose header claims 100000 x 100000 pixels (10 gigapixels), with a tiny body. */
export function hugeHeaderPng(): Buffer {
  const ihdr = Buffer.alloc(25);
  ihdr.writeUInt32BE(13, 0);
  ihdr.write('IHDR', 4, 'latin1');
  ihdr.writeUInt32BE(100_000, 8);
  ihdr.writeUInt32BE(100_000, 12);
  ihdr[16] = 8;
  ihdr[17] = 2;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), ihdr, Buffer.alloc(64)]);
}

export async function startFixtureServer(): Promise<FixtureServer> {
  const images: FixtureImage[] = [];
  for (const [i, [name, w, h, format, o]] of IMAGE_SPECS.entries()) {
    images.push({ path: `/img/${name}`, bytes: await makeImage(w, h, format, i + 1, o), width: w, height: h, format });
  }
  const byPath = new Map(images.map((im) => [im.path, im]));
  const landscape = byPath.get('/img/landscape.jpg')!;
  const bomb = await buildBomb();
  const hits = new Map<string, number>();
  const types = { jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp' };
  let port = 0;

  const send = (res: ServerResponse, status: number, body: Buffer | string, headers: Record<string, string> = {}) => {
    const b = typeof body === 'string' ? Buffer.from(body) : body;
    res.writeHead(status, { 'content-length': String(b.length), ...headers });
    res.end(b);
  };
  const redirect = (res: ServerResponse, location: string, status = 302) => send(res, status, '', { location });

  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = url.pathname;
    const n = (hits.get(path) ?? 0) + 1;
    hits.set(path, n);
    const img = byPath.get(path);
    if (img) return send(res, 200, img.bytes, { 'content-type': types[img.format] });
    switch (true) {
      case path === '/ua':
        return send(res, 200, String(req.headers['user-agent'] ?? ''), { 'content-type': 'text/plain' });
      case path === '/missing.jpg':
        return send(res, 404, 'not found', { 'content-type': 'text/plain' });
      case path.startsWith('/flaky500/'): // 500 on the first request, then the image
        return n === 1 ? send(res, 500, 'oops') : send(res, 200, landscape.bytes, { 'content-type': 'image/jpeg' });
      case path.startsWith('/always503/'):
        return send(res, 503, 'down');
      case path.startsWith('/ratelimited/'): // 429 with Retry-After: 1 on the first request, then the image
        return n === 1
          ? send(res, 429, 'slow down', { 'retry-after': '1' })
          : send(res, 200, landscape.bytes, { 'content-type': 'image/jpeg' });
      case path.startsWith('/ratelimited-long/'):
        return send(res, 429, 'slow down', { 'retry-after': '3600' });
      case path === '/slow.jpg': {
        // headers at once, then one byte every 400 ms
        res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': String(landscape.bytes.length) });
        let off = 0;
        const timer = setInterval(() => {
          if (res.destroyed || off >= landscape.bytes.length) return clearInterval(timer);
          res.write(landscape.bytes.subarray(off, off + 1));
          off++;
        }, 400);
        res.on('close', () => clearInterval(timer));
        return;
      }
      case path === '/truncated.jpg': {
        const cut = landscape.bytes.subarray(0, Math.floor(landscape.bytes.length * TRUNCATED_FRACTION));
        return send(res, 200, cut, { 'content-type': 'image/jpeg' });
      }
      case path === '/cut-connection.jpg': {
        // Content-Length promises more than is sent
        res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': String(landscape.bytes.length) });
        res.write(landscape.bytes.subarray(0, 1000));
        setTimeout(() => res.socket?.destroy(), 20);
        return;
      }
      case path === '/text.txt':
        return send(res, 200, 'just some text, not an image at all\n', { 'content-type': 'text/plain' });
      case path === '/html-as.jpg':
        return send(res, 200, '<!doctype html><html><body>Not found</body></html>', { 'content-type': 'image/jpeg' });
      case path === '/empty.jpg':
        return send(res, 200, Buffer.alloc(0), { 'content-type': 'image/jpeg' });
      case path === '/bomb.png':
        return send(res, 200, bomb, { 'content-type': 'image/png' });
      case path === '/huge-header.png':
        return send(res, 200, hugeHeaderPng(), { 'content-type': 'image/png' });
      case path === '/big.bin':
        return send(res, 200, Buffer.alloc(2 * 1024 * 1024, 1), { 'content-type': 'image/jpeg' });
      case path === '/robots/noai.jpg':
        return send(res, 200, landscape.bytes, { 'content-type': 'image/jpeg', 'x-robots-tag': 'noai' });
      case path === '/robots/other-bot.jpg':
        return send(res, 200, landscape.bytes, {
          'content-type': 'image/jpeg',
          'x-robots-tag': 'otherbot: noindex, noai',
        });
      case /^\/redirect\/chain\/\d+$/.test(path): {
        const k = Number(path.slice('/redirect/chain/'.length));
        return redirect(res, k <= 1 ? '/img/portrait.jpg' : `/redirect/chain/${k - 1}`, k % 2 ? 301 : 302);
      }
      case path === '/redirect/loop-a':
        return redirect(res, '/redirect/loop-b');
      case path === '/redirect/loop-b':
        return redirect(res, `http://127.0.0.1:${port}/redirect/loop-a`);
      case path === '/redirect/private':
        return redirect(res, 'http://10.0.0.1/secret.jpg');
      case path === '/redirect/metadata':
        return redirect(res, 'http://169.254.169.254/latest/meta-data/');
      case path === '/redirect/localhost-name':
        return redirect(res, `http://localhost:${port}/img/landscape.jpg`);
      default:
        return send(res, 404, 'no such fixture', { 'content-type': 'text/plain' });
    }
  };

  const server = createServer(handler);
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    port,
    images,
    hits: (p) => hits.get(p) ?? 0,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
