/**
 * `s3://bucket/prefix` artifact storage on any S3-compatible service (AWS SDK v3), with the file
 * backend's guarantees in S3 terms:
 *  - an object appears whole or not at all: one PUT, or a multipart upload completed last
 *    (`@aws-sdk/lib-storage` picks which; a failed or aborted writer aborts its multipart upload);
 *  - `createExclusive` is a conditional PUT (`If-None-Match: *`): 412 means someone else won;
 *  - the sha256 is computed while the bytes stream out, as the file backend does;
 *  - multipart uploads a killed writer left behind are aborted by the next writer of the same key
 *    and by `sweepTempFiles` (the S3 form of the file backend's temp files).
 * Endpoint, region and credentials come from the standard AWS environment and config files
 * (AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE, ~/.aws/config, ...);
 * KILN_S3_PATH_STYLE=1 selects path-style addressing (MinIO, moto, Ceph without virtual hosts).
 */
import { PassThrough } from 'node:stream';
import { createHash } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { ConfigError, UnsafePathError } from './errors.js';
import { sha256Hex } from './hash.js';
import { assertSafeSegment, type ArtifactStorage, type AtomicWriter, type WrittenObject } from './storage.js';

/** Parts of 8 MiB: objects below that go up in one PUT. */
export const S3_PART_SIZE = 8 * 1024 * 1024;

export interface S3Location {
  bucket: string;
  /** Key prefix without leading or trailing '/', '' for the bucket root. */
  prefix: string;
}

/** Parse `s3://bucket[/prefix]`; anything else is a ConfigError naming the expected form. */
export function parseS3Uri(uri: string): S3Location {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(uri);
  if (!m) {
    throw new ConfigError(
      `${JSON.stringify(uri)} is not an s3:// URI with a valid bucket name`,
      'write it as s3://bucket/prefix (bucket: 3-63 lowercase letters, digits, "." or "-").',
    );
  }
  const prefix = (m[2] ?? '').replace(/\/+$/, '');
  for (const seg of prefix === '' ? [] : prefix.split('/')) assertSafeSegment(seg, `s3 prefix segment of ${uri}`);
  return { bucket: m[1]!, prefix };
}

/** An S3 client configured from the standard AWS environment/config files, plus KILN_S3_PATH_STYLE. */
export function s3ClientFromEnv(env: NodeJS.ProcessEnv = process.env): S3Client {
  const pathStyle = /^(1|true|yes)$/i.test(env.KILN_S3_PATH_STYLE ?? '');
  // Kiln supports Node 20 (package.json engines); the SDK's notice that later SDKs will need 22 is
  // noise on every CLI run. Set the variable to 'false' to see it.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  return new S3Client({ forcePathStyle: pathStyle });
}

const statusOf = (err: unknown): number | undefined =>
  (err as S3ServiceException | undefined)?.$metadata?.httpStatusCode;
const isNotFound = (err: unknown) => statusOf(err) === 404 || ['NotFound', 'NoSuchKey'].includes((err as Error)?.name);

export class S3Storage implements ArtifactStorage {
  readonly rootUri: string;
  readonly bucket: string;
  private readonly prefix: string;

  constructor(
    rootUri: string,
    readonly client: S3Client = s3ClientFromEnv(),
  ) {
    const loc = parseS3Uri(rootUri);
    this.bucket = loc.bucket;
    this.prefix = loc.prefix;
    this.rootUri = `s3://${loc.bucket}/${loc.prefix === '' ? '' : `${loc.prefix}/`}`;
  }

  uri(...segments: string[]): string {
    return this.child(this.rootUri, ...segments);
  }

  child(base: string, ...segments: string[]): string {
    const key = this.key(base);
    const parts = [key, ...segments.map((s) => assertSafeSegment(s))].filter((p) => p !== '');
    return `s3://${this.bucket}/${parts.join('/')}`;
  }

  /** The object key of a URI of this storage ('' for the bucket root); refuses other buckets and prefixes. */
  key(uri: string): string {
    const head = `s3://${this.bucket}/`;
    if (!uri.startsWith(head))
      throw new UnsafePathError(`URI ${JSON.stringify(uri)} is not in this storage's bucket ${this.bucket}`);
    const key = uri.slice(head.length).replace(/\/+$/, '');
    if (key !== '') for (const seg of key.split('/')) assertSafeSegment(seg, `segment of ${uri}`);
    if (this.prefix !== '' && key !== this.prefix && !key.startsWith(`${this.prefix}/`)) {
      throw new UnsafePathError(`URI ${JSON.stringify(uri)} is outside the data root ${this.rootUri}`);
    }
    return key;
  }

  displayLocation(uri: string): string {
    this.key(uri); // inside this data root, or UnsafePathError
    return uri;
  }

  localPath(uri: string): string {
    throw new UnsafePathError(
      `URI ${JSON.stringify(uri)} is in object storage and has no local path (use storage.read or the local cache)`,
    );
  }

  async read(uri: string): Promise<Buffer> {
    const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(uri) }));
    return Buffer.from(await res.Body!.transformToByteArray());
  }

  async readText(uri: string): Promise<string> {
    return (await this.read(uri)).toString('utf8');
  }

  /** The object as a stream of chunks (for hashing or caching without holding it in memory). */
  async *readStream(uri: string): AsyncGenerator<Uint8Array> {
    const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(uri) }));
    for await (const chunk of res.Body as AsyncIterable<Uint8Array>) yield chunk;
  }

  /** ETag and size of an object, or null when it does not exist. */
  async head(uri: string): Promise<{ etag: string; bytes: number } | null> {
    try {
      const h = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key(uri) }));
      return { etag: h.ETag ?? '', bytes: h.ContentLength ?? 0 };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  async writeAtomic(uri: string, data: Uint8Array | string): Promise<WrittenObject> {
    const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    if (body.byteLength < S3_PART_SIZE) {
      // One PUT: S3 makes it visible whole or not at all. Uploads killed writers of this key left go first.
      const sha256 = sha256Hex(body);
      await this.abortUploads(this.key(uri), true);
      await this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: this.key(uri), Body: body, Metadata: { sha256 } }),
      );
      return { uri, sha256, bytes: body.byteLength };
    }
    const w = await this.openAtomicWriter(uri);
    try {
      await w.write(body);
      return await w.commit();
    } catch (err) {
      await w.abort();
      throw err;
    }
  }

  async openAtomicWriter(uri: string): Promise<AtomicWriter> {
    const key = this.key(uri);
    // Multipart uploads of earlier writers of this same key (killed mid-write) are garbage now.
    await this.abortUploads(key, true);
    const stream = new PassThrough({ highWaterMark: 1024 * 1024 });
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: stream },
      partSize: S3_PART_SIZE,
      queueSize: 2,
      leavePartsOnError: false,
    });
    const done = upload.done();
    done.catch(() => undefined); // observed in commit(); an abort rejects it on purpose
    const hash = createHash('sha256');
    let bytes = 0;
    let finished = false;
    return {
      uri,
      async write(chunk: Uint8Array) {
        if (finished) throw new Error(`writer of ${uri} is already committed or aborted`);
        hash.update(chunk);
        bytes += chunk.byteLength;
        if (!stream.write(chunk))
          await new Promise<void>((res, rej) => {
            const onDrain = () => {
              stream.off('error', onError);
              res();
            };
            const onError = (e: Error) => {
              stream.off('drain', onDrain);
              rej(e);
            };
            stream.once('drain', onDrain).once('error', onError);
          });
      },
      async commit() {
        finished = true;
        stream.end();
        await done;
        return { uri, sha256: hash.digest('hex'), bytes };
      },
      async abort() {
        if (finished) return;
        finished = true;
        await upload.abort().catch(() => undefined);
        stream.destroy();
        await done.catch(() => undefined);
      },
    };
  }

  async createExclusive(uri: string, data: Uint8Array | string): Promise<boolean> {
    const body = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: this.key(uri),
            Body: body,
            IfNoneMatch: '*',
            Metadata: { sha256: sha256Hex(body) },
          }),
        );
        return true;
      } catch (err) {
        if (statusOf(err) === 412) return false;
        // 409 ConditionalRequestConflict: another conditional write of this key is in flight; ask again.
        if (statusOf(err) === 409 && attempt < 5) {
          await new Promise((r) => setTimeout(r, 50 * 2 ** attempt));
          continue;
        }
        throw err;
      }
    }
  }

  async exists(uri: string): Promise<boolean> {
    return (await this.size(uri)) !== null;
  }

  async size(uri: string): Promise<number | null> {
    return (await this.head(uri))?.bytes ?? null;
  }

  async list(dirUri: string): Promise<string[]> {
    const dirKey = this.key(dirUri);
    const prefix = dirKey === '' ? '' : `${dirKey}/`;
    const names = new Set<string>();
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, Delimiter: '/', ContinuationToken: token }),
      );
      for (const o of page.Contents ?? [])
        if (o.Key && o.Key.length > prefix.length) names.add(o.Key.slice(prefix.length));
      for (const p of page.CommonPrefixes ?? [])
        if (p.Prefix) names.add(p.Prefix.slice(prefix.length).replace(/\/$/, ''));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return [...names].sort();
  }

  /** Every object key under a directory URI, relative to it (recursive). */
  async listRecursive(dirUri: string): Promise<string[]> {
    const dirKey = this.key(dirUri);
    const prefix = dirKey === '' ? '' : `${dirKey}/`;
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const o of page.Contents ?? [])
        if (o.Key && o.Key.length > prefix.length) out.push(o.Key.slice(prefix.length));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out.sort();
  }

  /** Remove an object and, like `rm -r`, everything under it as a directory. */
  async remove(uri: string): Promise<void> {
    const key = this.key(uri);
    const keys = [key, ...(await this.listRecursive(uri)).map((k) => `${key}/${k}`)];
    for (let i = 0; i < keys.length; i += 1000) {
      await this.client.send(
        new DeleteObjectsCommand({
          Bucket: this.bucket,
          Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true },
        }),
      );
    }
  }

  /**
   * Abort the multipart uploads in flight under `key` (exactly that key when `exact`, else every
   * key below it as a directory); returns how many were aborted.
   */
  async abortUploads(key: string, exact: boolean): Promise<number> {
    const prefix = exact || key === '' ? key : `${key}/`;
    let n = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const page = await this.client.send(
        new ListMultipartUploadsCommand({
          Bucket: this.bucket,
          Prefix: prefix,
          KeyMarker: keyMarker,
          UploadIdMarker: uploadIdMarker,
        }),
      );
      for (const u of page.Uploads ?? []) {
        if (!u.Key || !u.UploadId || (exact && u.Key !== key)) continue;
        await this.client
          .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: u.Key, UploadId: u.UploadId }))
          .catch((err) => {
            if (!isNotFound(err)) throw err;
          });
        n++;
      }
      keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
      uploadIdMarker = page.IsTruncated ? page.NextUploadIdMarker : undefined;
    } while (keyMarker);
    return n;
  }

  async blob(uri: string): Promise<Blob> {
    return new Blob([await this.read(uri)]);
  }

  async sweepTemps(dirUri: string): Promise<number> {
    return this.abortUploads(this.key(dirUri), false);
  }

  async sha256(uri: string): Promise<string> {
    const h = createHash('sha256');
    for await (const chunk of this.readStream(uri)) h.update(chunk);
    return h.digest('hex');
  }
}
