/**
 * A synthetic local "web" for the demo and benchmarks: a loopback HTTP server of generated,
 * captioned images (coloured shapes on coloured backgrounds, rendered from SVG by sharp, so
 * captions describe the pixels), with the faults a real crawl meets: 404s, a 500 that succeeds on
 * retry, a 429 with Retry-After, truncated bodies, HTML served as image/jpeg, an X-Robots-Tag noai
 * image, a redirect chain and a redirect to a private address. Deterministic for a given seed.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { mulberry32 } from '../infra/prng.js';

const COLORS: Record<string, string> = {
  red: '#d62828',
  blue: '#1d4ed8',
  green: '#2a9d4a',
  yellow: '#f4c531',
  purple: '#7b2cbf',
  orange: '#f77f00',
  black: '#111111',
  white: '#f5f5f5',
};
const SHAPES = ['circle', 'square', 'triangle', 'ring'] as const;

export type SyntheticFault =
  | 'none'
  | 'not_found'
  | 'flaky_500'
  | 'rate_limited'
  | 'truncated'
  | 'html_as_jpeg'
  | 'noai'
  | 'redirect_chain'
  | 'redirect_private';

export interface SyntheticItem {
  index: number;
  path: string;
  caption: string;
  fault: SyntheticFault;
}

export interface SyntheticWeb {
  baseUrl: string;
  items: SyntheticItem[];
  /** CSV text with `url,caption` columns for every item. */
  urlListCsv(): string;
  close(): Promise<void>;
}

interface Scene {
  shape: (typeof SHAPES)[number];
  fg: string;
  bg: string;
  x: number;
  y: number;
  r: number;
}

function sceneOf(index: number, seed: number): Scene {
  const r = mulberry32(seed * 100_003 + index);
  const names = Object.keys(COLORS);
  const fg = names[Math.floor(r() * names.length)]!;
  let bg = names[Math.floor(r() * names.length)]!;
  if (bg === fg) bg = names[(names.indexOf(fg) + 3) % names.length]!;
  return {
    shape: SHAPES[Math.floor(r() * SHAPES.length)]!,
    fg,
    bg,
    x: 0.3 + r() * 0.4,
    y: 0.3 + r() * 0.4,
    r: 0.15 + r() * 0.15,
  };
}

function svgOf(s: Scene, w: number, h: number): string {
  const cx = s.x * w,
    cy = s.y * h,
    rr = s.r * Math.min(w, h);
  const fill = COLORS[s.fg]!;
  const shape =
    s.shape === 'circle'
      ? `<circle cx="${cx}" cy="${cy}" r="${rr}" fill="${fill}"/>`
      : s.shape === 'square'
        ? `<rect x="${cx - rr}" y="${cy - rr}" width="${2 * rr}" height="${2 * rr}" fill="${fill}"/>`
        : s.shape === 'ring'
          ? `<circle cx="${cx}" cy="${cy}" r="${rr}" fill="none" stroke="${fill}" stroke-width="${rr / 3}"/>`
          : `<polygon points="${cx},${cy - rr} ${cx - rr},${cy + rr} ${cx + rr},${cy + rr}" fill="${fill}"/>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}"><rect width="100%" height="100%" fill="${COLORS[s.bg]!}"/>${shape}</svg>`;
}

/** Render item `index` as a JPEG of the given size. */
export async function renderSyntheticImage(
  index: number,
  seed: number,
  width: number,
  height: number,
  quality = 85,
): Promise<Buffer> {
  return sharp(Buffer.from(svgOf(sceneOf(index, seed), width, height)))
    .jpeg({ quality })
    .toBuffer();
}

export function syntheticCaption(index: number, seed: number): string {
  const s = sceneOf(index, seed);
  return `a ${s.fg} ${s.shape} on a ${s.bg} background`;
}

const FAULT_CYCLE: SyntheticFault[] = [
  'not_found',
  'flaky_500',
  'rate_limited',
  'truncated',
  'html_as_jpeg',
  'noai',
  'redirect_chain',
  'redirect_private',
];

export interface SyntheticWebOptions {
  count: number;
  seed?: number;
  /** One item in `faultEvery` carries a fault (cycling through the kinds); 0 disables faults. */
  faultEvery?: number;
  width?: number;
  height?: number;
}

/** Start the server on 127.0.0.1 (port 0). Images are rendered on first request and cached. */
export async function startSyntheticWeb(o: SyntheticWebOptions): Promise<SyntheticWeb> {
  const seed = o.seed ?? 1;
  const faultEvery = o.faultEvery ?? 12;
  const w = o.width ?? 96,
    h = o.height ?? 72;
  const items: SyntheticItem[] = Array.from({ length: o.count }, (_, i) => ({
    index: i,
    path: `/img/${i}.jpg`,
    caption: syntheticCaption(i, seed),
    fault:
      faultEvery > 0 && i % faultEvery === faultEvery - 1
        ? FAULT_CYCLE[Math.floor(i / faultEvery) % FAULT_CYCLE.length]!
        : 'none',
  }));
  const cache = new Map<number, Promise<Buffer>>();
  const hits = new Map<number, number>();
  const image = (i: number) => {
    let p = cache.get(i);
    if (!p) {
      p = renderSyntheticImage(i, seed, w, h);
      cache.set(i, p);
    }
    return p;
  };
  const server: Server = createServer((req, res) => {
    void (async () => {
      // `?hop=N` drives the redirect chain; any other query string serves the same image (mirrors).
      const m = /^\/img\/(\d+)\.jpg(?:\?(?:hop=(\d+)|[\w=&.-]*))?$/.exec(req.url ?? '');
      const item = m ? items[Number(m[1])] : undefined;
      if (!item || item.fault === 'not_found') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      const n = (hits.get(item.index) ?? 0) + 1;
      hits.set(item.index, n);
      switch (item.fault) {
        case 'flaky_500':
          if (n === 1) {
            res.writeHead(500).end('try again');
            return;
          }
          break;
        case 'rate_limited':
          if (n === 1) {
            res.writeHead(429, { 'retry-after': '1' }).end();
            return;
          }
          break;
        case 'html_as_jpeg':
          res.writeHead(200, { 'content-type': 'image/jpeg' }).end('<html><body>not an image</body></html>');
          return;
        case 'redirect_chain': {
          const hop = Number(m![2] ?? 0);
          if (hop < 2) {
            res.writeHead(302, { location: `${item.path}?hop=${hop + 1}` }).end();
            return;
          }
          break;
        }
        case 'redirect_private':
          res.writeHead(302, { location: 'http://10.255.255.1/img.jpg' }).end();
          return;
        default:
          break;
      }
      const body = await image(item.index);
      const headers: Record<string, string> = { 'content-type': 'image/jpeg', 'content-length': String(body.length) };
      if (item.fault === 'noai') headers['x-robots-tag'] = 'noai, noimageai';
      if (item.fault === 'truncated') {
        res.writeHead(200, { 'content-type': 'image/jpeg' });
        res.end(body.subarray(0, Math.floor(body.length * 0.5)));
        return;
      }
      res.writeHead(200, headers).end(body);
    })().catch((err: unknown) => {
      res.writeHead(500).end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    baseUrl,
    items,
    urlListCsv: () => ['url,caption', ...items.map((it) => `${baseUrl}${it.path},"${it.caption}"`)].join('\n') + '\n',
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
