/**
 * The one storage interface for artifacts (shards, manifests, checkpoints, reports), addressed by
 * URI: local files (`file://`, here) or S3-compatible object storage (`s3://`, storage-s3.ts);
 * `openStorage` (storage-open.ts) picks one from the data root.
 * Local writes are atomic: temp file in the same directory, fsync, rename, fsync of the directory,
 * so a partial file is never visible under its final name.
 */
import { openAsBlob } from 'node:fs';
import { link, mkdir, open, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { UnsafePathError } from './errors.js';
import { sha256File } from './hash.js';

export interface WrittenObject {
  uri: string;
  sha256: string;
  bytes: number;
}

/** Streaming atomic writer: bytes go to a hidden temp file until `commit()`. */
export interface AtomicWriter {
  readonly uri: string;
  write(chunk: Uint8Array): Promise<void>;
  /** fsync + rename into place; returns the hash and size of what was written. */
  commit(): Promise<WrittenObject>;
  /** Remove the temp file; the final URI is untouched. */
  abort(): Promise<void>;
}

export interface ArtifactStorage {
  /** URI of the storage root (e.g. file:///data/kiln/). */
  readonly rootUri: string;
  /** Build a child URI from validated name segments (never string concatenation by callers). */
  uri(...segments: string[]): string;
  /** Child of an existing URI. */
  child(base: string, ...segments: string[]): string;
  read(uri: string): Promise<Buffer>;
  readText(uri: string): Promise<string>;
  writeAtomic(uri: string, data: Uint8Array | string): Promise<WrittenObject>;
  openAtomicWriter(uri: string): Promise<AtomicWriter>;
  /**
   * Write a complete file under `uri` only if nothing is there yet (atomic and exclusive across
   * processes); returns false, writing nothing, when the URI already exists.
   */
  createExclusive(uri: string, data: Uint8Array | string): Promise<boolean>;
  exists(uri: string): Promise<boolean>;
  size(uri: string): Promise<number | null>;
  /** Names directly under a directory URI (empty when it does not exist); temp files are hidden. */
  list(dirUri: string): Promise<string[]>;
  remove(uri: string): Promise<void>;
  /** sha256 (hex) of an existing object, streamed. */
  sha256(uri: string): Promise<string>;
  /** An existing object as a Blob (Parquet footers and row groups are read from it). */
  blob(uri: string): Promise<Blob>;
  /**
   * Remove what killed writers left under a directory URI (temp files; S3: multipart uploads in
   * flight). Call at stage start only: it never touches final objects. Returns how many.
   */
  sweepTemps(dirUri: string): Promise<number>;
  /** Local filesystem path for libraries that need one (SQLite, ONNX Runtime). file:// only. */
  localPath(uri: string): string;
  /** Where a user finds an object (what the CLI prints): its local path for file://, the URI itself in object storage. */
  displayLocation(uri: string): string;
}

const SAFE_SEGMENT = /^[A-Za-z0-9_][A-Za-z0-9._=-]*$/;
const TEMP_MARK = '.kiln-tmp-';

/** Validate one user- or code-supplied path segment (a dataset name, run id, shard file name...). */
export function assertSafeSegment(segment: string, what = 'name'): string {
  if (typeof segment !== 'string' || segment.length === 0) throw new UnsafePathError(`${what} is empty`);
  if (segment.includes('\0')) throw new UnsafePathError(`${what} ${JSON.stringify(segment)} contains a NUL byte`);
  if (segment === '.' || segment === '..' || segment.includes('/') || segment.includes('\\')) {
    throw new UnsafePathError(`${what} ${JSON.stringify(segment)} would escape the data root`);
  }
  if (segment.length > 200 || !SAFE_SEGMENT.test(segment)) {
    throw new UnsafePathError(
      `${what} ${JSON.stringify(segment)} has characters outside [A-Za-z0-9._=-] or is longer than 200`,
    );
  }
  return segment;
}

export class LocalStorage implements ArtifactStorage {
  readonly rootUri: string;
  private readonly rootPath: string;

  constructor(rootPath: string) {
    this.rootPath = resolve(rootPath);
    this.rootUri = pathToFileURL(this.rootPath + sep).href;
  }

  uri(...segments: string[]): string {
    return this.child(this.rootUri, ...segments);
  }

  child(base: string, ...segments: string[]): string {
    const basePath = this.localPath(base);
    const p = join(basePath, ...segments.map((s) => assertSafeSegment(s)));
    return pathToFileURL(p).href;
  }

  localPath(uri: string): string {
    if (!uri.startsWith('file://'))
      throw new UnsafePathError(`URI ${JSON.stringify(uri)} is not a file:// URI of this storage`);
    const p = resolve(fileURLToPath(uri));
    if (p !== this.rootPath && !p.startsWith(this.rootPath + sep)) {
      throw new UnsafePathError(`URI ${JSON.stringify(uri)} is outside the data root ${this.rootPath}`);
    }
    return p;
  }

  displayLocation(uri: string): string {
    return this.localPath(uri);
  }

  async read(uri: string): Promise<Buffer> {
    return readFile(this.localPath(uri));
  }

  async readText(uri: string): Promise<string> {
    return readFile(this.localPath(uri), 'utf8');
  }

  async writeAtomic(uri: string, data: Uint8Array | string): Promise<WrittenObject> {
    const w = await this.openAtomicWriter(uri);
    try {
      await w.write(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
      return await w.commit();
    } catch (err) {
      await w.abort();
      throw err;
    }
  }

  async openAtomicWriter(uri: string): Promise<AtomicWriter> {
    const finalPath = this.localPath(uri);
    const dir = dirname(finalPath);
    await mkdir(dir, { recursive: true });
    const base = finalPath.slice(dir.length + 1);
    // Temp files of earlier writers of this same URI (killed mid-write) are garbage now: a retry replaces them.
    await removeStaleTemps(dir, base);
    const tmpPath = join(dir, `${TEMP_MARK}${randomBytes(6).toString('hex')}-${base}`);
    const fh = await open(tmpPath, 'wx');
    const hash = createHash('sha256');
    let bytes = 0;
    let done = false;
    return {
      uri,
      async write(chunk: Uint8Array) {
        hash.update(chunk);
        bytes += chunk.byteLength;
        let off = 0;
        while (off < chunk.byteLength) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.byteLength - off);
          off += bytesWritten;
        }
      },
      async commit() {
        await fh.sync();
        await fh.close();
        await rename(tmpPath, finalPath);
        done = true;
        await fsyncDir(dir);
        return { uri, sha256: hash.digest('hex'), bytes };
      },
      async abort() {
        if (done) return;
        done = true;
        await fh.close().catch(() => undefined);
        await rm(tmpPath, { force: true });
      },
    };
  }

  async createExclusive(uri: string, data: Uint8Array | string): Promise<boolean> {
    const finalPath = this.localPath(uri);
    const dir = dirname(finalPath);
    await mkdir(dir, { recursive: true });
    const tmpPath = join(dir, `${TEMP_MARK}${randomBytes(6).toString('hex')}-${finalPath.slice(dir.length + 1)}`);
    const fh = await open(tmpPath, 'wx');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      // link() fails with EEXIST when the name exists: the complete file appears at once, or not at all.
      await link(tmpPath, finalPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    } finally {
      await rm(tmpPath, { force: true });
    }
    await fsyncDir(dir);
    return true;
  }

  async exists(uri: string): Promise<boolean> {
    return (await this.size(uri)) !== null;
  }

  async size(uri: string): Promise<number | null> {
    try {
      return (await stat(this.localPath(uri))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async list(dirUri: string): Promise<string[]> {
    try {
      return (await readdir(this.localPath(dirUri))).filter((n) => !n.startsWith(TEMP_MARK)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  async remove(uri: string): Promise<void> {
    await rm(this.localPath(uri), { force: true, recursive: true });
  }

  async sha256(uri: string): Promise<string> {
    return sha256File(this.localPath(uri));
  }

  async blob(uri: string): Promise<Blob> {
    return openAsBlob(this.localPath(uri));
  }

  async sweepTemps(dirUri: string): Promise<number> {
    const path = this.localPath(dirUri);
    let names: string[];
    try {
      names = await readdir(path);
    } catch {
      return 0;
    }
    const stale = names.filter((n) => n.startsWith(TEMP_MARK));
    await Promise.all(stale.map((n) => rm(join(path, n), { force: true })));
    return stale.length;
  }
}

const TEMP_NAME = new RegExp(`^${TEMP_MARK.replace(/[.]/g, '\\.')}[0-9a-f]{12}-(.+)$`);

async function removeStaleTemps(dir: string, base: string): Promise<void> {
  const names = await readdir(dir);
  await Promise.all(names.filter((n) => TEMP_NAME.exec(n)?.[1] === base).map((n) => rm(join(dir, n), { force: true })));
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Remove stale temp files left by a killed writer (call at stage start; never touches final files). */
export async function sweepTempFiles(storage: ArtifactStorage, dirUri: string): Promise<number> {
  return storage.sweepTemps(dirUri);
}
