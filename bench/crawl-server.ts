/**
 * Benchmark image server (its own process, so its CPU is not charged to the crawler): serves the
 * JPEG files of a directory from memory under /img/<n>.jpg, n = 0..∞ mapped onto the files.
 * Prints "PORT <port>" when listening. Usage: node dist/bench/crawl-server.js <imageDir>
 */
import { createServer } from 'node:http';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';

const dir = process.argv[2];
if (!dir) throw new Error('usage: crawl-server.js <imageDir>');
const images = readdirSync(dir)
  .filter((n) => n.endsWith('.jpg'))
  .sort()
  .map((n) => readFileSync(join(dir, n)));
if (images.length === 0) throw new Error(`no .jpg files in ${dir}`);
const headers = images.map((b) => ({ 'content-type': 'image/jpeg', 'content-length': String(b.length) }));

const server = createServer((req, res) => {
  const m = /^\/img\/(\d+)\.jpg$/.exec(req.url ?? '');
  if (!m) {
    res.writeHead(404, { 'content-length': '0' });
    res.end();
    return;
  }
  const i = Number(m[1]) % images.length;
  res.writeHead(200, headers[i]);
  res.end(images[i]);
});
server.keepAliveTimeout = 30_000;
server.maxRequestsPerSocket = 0;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
