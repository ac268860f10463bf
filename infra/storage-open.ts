/** The artifact storage of a data root: `s3://bucket/prefix` -> S3Storage, a path -> LocalStorage. */
import { LocalStorage, type ArtifactStorage } from './storage.js';
import { S3Storage } from './storage-s3.js';

export function isObjectStoreRoot(dataRoot: string): boolean {
  return dataRoot.startsWith('s3://');
}

export function openStorage(dataRoot: string): ArtifactStorage {
  return isObjectStoreRoot(dataRoot) ? new S3Storage(dataRoot) : new LocalStorage(dataRoot);
}
