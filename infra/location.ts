/**
 * Model and reference locations as users give them: a local path, or `s3://bucket/prefix` (a
 * directory in object storage, which `localModelDir` in storage-cache.ts turns into a local path).
 * No I/O and no heavy imports, so option parsing and the CLI can use these.
 */
import { basename, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/** True for a location in object storage (`s3://bucket/prefix`), which only the cache turns into a path. */
export function isObjectLocation(location: string): boolean {
  return location.startsWith('s3://');
}

/**
 * A user-given model or reference location made absolute without touching it: `s3://` as it is, a
 * path resolved against `baseDir` (the spec file's directory, or the working directory).
 */
export function absoluteLocation(location: string, baseDir = process.cwd()): string {
  return isObjectLocation(location) ? location : resolve(baseDir, location);
}

/** The URI of a file inside a location, as lineage records it: `s3://b/dir/f`, or `file:///abs/dir/f`. */
export function locationFileUri(location: string, rel: string): string {
  if (isObjectLocation(location)) return `${location.replace(/\/+$/, '')}/${rel}`;
  return pathToFileURL(join(resolve(location), ...rel.split('/'))).href;
}

/** The last name of a location (`s3://b/models/clip/` -> `clip`), for names shown and recorded. */
export function locationName(location: string): string {
  return basename(location.replace(/\/+$/, ''));
}
