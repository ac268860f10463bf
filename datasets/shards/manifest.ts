/**
 * The dataset manifest (`manifest.json`): the immutable description of one dataset version. Its
 * shards are listed by path relative to the version directory (so a dataset can be moved between
 * storage backends), with row count, size and sha256.
 */
import { z } from 'zod';
import type { ArtifactStorage, WrittenObject } from '../../infra/storage.js';
import { sha256Hex } from '../../infra/hash.js';
import { KilnError } from '../../infra/errors.js';
import type { RowStatus } from './schema.js';
import { DatasetLayout } from './layout.js';

export interface ManifestShard {
  index: number;
  /** Relative to the version directory, e.g. `shards/shard-000012.parquet`. */
  path: string;
  rows: number;
  sha256: string;
  bytes: number;
  /** Relative path of the shard's stats JSON, when there is one. */
  stats?: string;
}

export interface DatasetManifest {
  /** `<name>@v<version>` (datasetVersionId). */
  id: string;
  name: string;
  version: number;
  /** Ids of the dataset versions this one was derived from (empty for a crawl). */
  parents: string[];
  schemaVersion: number;
  /** The stage that produced it and its parameters. */
  stage: string;
  params: unknown;
  createdAt: string;
  rows: number;
  countsByStatus?: Partial<Record<RowStatus, number>>;
  shards: ManifestShard[];
}

const manifestSchema = z.object({
  id: z.string(),
  name: z.string(),
  version: z.number().int().positive(),
  parents: z.array(z.string()),
  schemaVersion: z.number().int(),
  stage: z.string(),
  params: z.unknown(),
  createdAt: z.string(),
  rows: z.number().int().nonnegative(),
  countsByStatus: z.record(z.string(), z.number()).optional(),
  shards: z.array(
    z.object({
      index: z.number().int().nonnegative(),
      path: z.string(),
      rows: z.number().int().nonnegative(),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
      bytes: z.number().int().nonnegative(),
      stats: z.string().optional(),
    }),
  ),
});

/** A manifest file that does not match the manifest contract. */
export class InvalidManifestError extends KilnError {
  constructor(uri: string, problem: string) {
    super(
      'KILN_INVALID_MANIFEST',
      `manifest ${uri} is invalid: ${problem}`,
      'manifests are written by Kiln and never edited by hand; restore it from the producing run or re-run the stage into a new version.',
    );
  }
}

/** Parse and validate a manifest's JSON text. */
export function parseManifest(text: string, uri = 'manifest.json'): DatasetManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new InvalidManifestError(uri, `not JSON (${(err as Error).message})`);
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success)
    throw new InvalidManifestError(uri, parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  return parsed.data as DatasetManifest;
}

/** Read the manifest of dataset `name` version `version`. */
export async function readDatasetManifest(
  storage: ArtifactStorage,
  name: string,
  version: number,
): Promise<DatasetManifest> {
  const uri = new DatasetLayout(storage, name, version).manifestUri;
  return parseManifest(await storage.readText(uri), uri);
}

/** Write a manifest atomically (pretty JSON, trailing newline). */
export async function writeDatasetManifest(
  storage: ArtifactStorage,
  manifest: DatasetManifest,
): Promise<WrittenObject> {
  const layout = new DatasetLayout(storage, manifest.name, manifest.version);
  parseManifest(JSON.stringify(manifest), layout.manifestUri);
  return storage.writeAtomic(layout.manifestUri, `${JSON.stringify(manifest, null, 2)}\n`);
}

/**
 * The version's manifest, written once: when `manifest.json` already exists (an earlier attempt
 * wrote it) it is validated and reused, else `build()` is written atomically.
 */
export async function reuseOrWriteManifest(
  storage: ArtifactStorage,
  name: string,
  version: number,
  build: () => Promise<DatasetManifest>,
): Promise<{ ref: WrittenObject; manifest: DatasetManifest }> {
  const uri = new DatasetLayout(storage, name, version).manifestUri;
  if (!(await storage.exists(uri))) await writeDatasetManifest(storage, await build());
  const text = await storage.readText(uri);
  const manifest = parseManifest(text, uri);
  return { ref: { uri, sha256: sha256Hex(text), bytes: Buffer.byteLength(text) }, manifest };
}

/** URIs of the manifest's shards, in manifest order. */
export function manifestShardUris(storage: ArtifactStorage, manifest: DatasetManifest): string[] {
  const layout = new DatasetLayout(storage, manifest.name, manifest.version);
  return manifest.shards.map((s) => layout.resolve(s.path));
}
