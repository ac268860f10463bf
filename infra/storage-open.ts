/** The artifact storage of a data root: `s3://bucket/prefix` -> S3Storage, a path -> LocalStorage. */
import { fileURLToPath } from 'node:url';
import { LocalStorage, type ArtifactStorage } from './storage.js';
import { S3Storage } from './storage-s3.js';

export function isObjectStoreRoot(dataRoot: string): boolean {
  return dataRoot.startsWith('s3://');
}

export function openStorage(dataRoot: string): ArtifactStorage {
  return isObjectStoreRoot(dataRoot) ? new S3Storage(dataRoot) : new LocalStorage(dataRoot);
}

/**
 * The data root `openStorage` opens `storage` again from (in another thread), or null when it cannot:
 * a storage whose root is neither a local directory nor `s3://`.
 */
export function reopenableRoot(storage: ArtifactStorage): string | null {
  if (storage.rootUri.startsWith('file://')) return fileURLToPath(storage.rootUri).replace(/(.)\/+$/, '$1');
  if (isObjectStoreRoot(storage.rootUri)) return storage.rootUri.replace(/\/+$/, '');
  return null;
}
