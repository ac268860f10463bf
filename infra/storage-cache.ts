/**
 * A worker's local cache of objects for libraries that need a path (ONNX Runtime model dirs,
 * Parquet readers that want a file), content-addressed by sha256:
 *   <cache>/sha256/<hex>          the bytes of every object fetched, once per content
 *   <cache>/index/<key>           sha256 of (uri, ETag, size) -> the content's hex, so an unchanged
 *                                 object is not fetched again (one HEAD request)
 *   <cache>/dirs/<hex>/...        a directory (model dir) as hard links to its files' contents,
 *                                 named by the sha256 of its (relative path, sha256) listing
 * Everything appears by rename, so a killed worker leaves only `tmp/` garbage, swept on open.
 * The cache is KILN_CACHE_DIR, else ~/.cache/kiln; deleting it is always safe.
 */
import { createWriteStream } from 'node:fs';
import { copyFile, link, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { once } from 'node:events';
import { MissingFileError } from './errors.js';
import { isObjectLocation } from './location.js';
import { sha256Hex } from './hash.js';
import { S3Storage } from './storage-s3.js';
import type { ArtifactStorage } from './storage.js';

export function cacheDirFromEnv(env: NodeJS.ProcessEnv = process.env): string {
  return env.KILN_CACHE_DIR ?? join(homedir(), '.cache', 'kiln');
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

export class ObjectCache {
  private swept = false;
  constructor(readonly dir: string) {}

  private async tmpPath(): Promise<string> {
    const tmp = join(this.dir, 'tmp');
    if (!this.swept) {
      this.swept = true;
      await rm(tmp, { recursive: true, force: true });
    }
    await mkdir(tmp, { recursive: true });
    return join(tmp, `${process.pid}-${randomBytes(6).toString('hex')}`);
  }

  /** A local path holding the bytes of `uri` (file:// URIs are their own path). */
  async file(storage: ArtifactStorage, uri: string): Promise<string> {
    if (!(storage instanceof S3Storage)) return storage.localPath(uri);
    return (await this.fetch(storage, uri)).path;
  }

  private async fetch(storage: S3Storage, uri: string): Promise<{ path: string; sha256: string }> {
    const head = await storage.head(uri);
    if (!head) throw new Error(`object ${uri} does not exist`);
    const indexPath = join(this.dir, 'index', sha256Hex(`${uri}\n${head.etag}\n${head.bytes}`));
    const known = await readFile(indexPath, 'utf8').catch(() => null);
    if (known && (await exists(this.contentPath(known)))) return { path: this.contentPath(known), sha256: known };
    const tmp = await this.tmpPath();
    const out = createWriteStream(tmp);
    const hash = createHash('sha256');
    try {
      for await (const chunk of storage.readStream(uri)) {
        hash.update(chunk);
        if (!out.write(chunk)) await once(out, 'drain');
      }
      out.end();
      await once(out, 'finish');
    } catch (err) {
      out.destroy();
      await rm(tmp, { force: true });
      throw err;
    }
    const sha256 = hash.digest('hex');
    const path = this.contentPath(sha256);
    await mkdir(dirname(path), { recursive: true });
    await rename(tmp, path);
    await mkdir(dirname(indexPath), { recursive: true });
    const idxTmp = await this.tmpPath();
    await writeFile(idxTmp, sha256);
    await rename(idxTmp, indexPath);
    return { path, sha256 };
  }

  private contentPath(sha256: string): string {
    return join(this.dir, 'sha256', sha256.slice(0, 2), sha256);
  }

  /** A local directory with the files under `dirUri` at their relative paths (file:// dirs are their own path). */
  async directory(storage: ArtifactStorage, dirUri: string): Promise<string> {
    if (!(storage instanceof S3Storage)) return storage.localPath(dirUri);
    const rels = await storage.listRecursive(dirUri);
    if (rels.length === 0) throw new Error(`no objects under ${dirUri}`);
    const base = dirUri.replace(/\/+$/, '');
    const files: { rel: string; path: string; sha256: string }[] = [];
    for (const rel of rels) files.push({ rel, ...(await this.fetch(storage, `${base}/${rel}`)) });
    const id = sha256Hex(files.map((f) => `${f.rel}\0${f.sha256}\n`).join(''));
    const final = join(this.dir, 'dirs', id);
    if (await exists(final)) return final;
    const tmp = await this.tmpPath();
    for (const f of files) {
      const p = join(tmp, ...f.rel.split('/'));
      await mkdir(dirname(p), { recursive: true });
      await link(f.path, p).catch(() => copyFile(f.path, p));
    }
    await mkdir(dirname(final), { recursive: true });
    await rename(tmp, final).catch(async (err) => {
      // another process built the same directory first: same content, keep theirs
      if (!(await exists(final))) throw err;
      await rm(tmp, { recursive: true, force: true });
    });
    return final;
  }
}

/**
 * The one resolver from a model or reference directory (ONNX model dirs, the VAE codec, the FID
 * extractor, CLIP dirs, a directory of reference images) to a local directory that libraries can
 * open: a path is returned absolute, as it is; `s3://bucket/prefix` is fetched into the worker's
 * ObjectCache (KILN_CACHE_DIR, once per content, keyed by sha256) with the standard AWS
 * environment's credentials. An s3:// location with no objects is a MissingFileError.
 */
export async function localModelDir(dir: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  if (!isObjectLocation(dir)) return resolve(dir);
  const storage = new S3Storage(dir);
  const rels = await storage.listRecursive(storage.rootUri);
  if (rels.length === 0)
    throw new MissingFileError(
      `no objects under ${storage.rootUri} (a model or reference directory in object storage is the objects under that prefix)`,
      `upload the directory there (e.g. \`aws s3 cp --recursive DIR ${storage.rootUri}\`) or give a local path.`,
    );
  return new ObjectCache(cacheDirFromEnv(env)).directory(storage, storage.rootUri);
}
