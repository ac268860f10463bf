/**
 * Artifacts and references shared by the training and evaluation activities: pinning a dataset
 * version by its manifest hash, writing immutable run artifacts (reports, logs, best.json) and
 * linking already-recorded artifacts to a run.
 */
import { ConfigError, MissingFileError } from '../infra/errors.js';
import { sha256Hex } from '../infra/hash.js';
import { DatasetLayout } from '../datasets/shards/layout.js';
import {
  InvalidManifestError,
  manifestShardUris,
  parseManifest,
  type DatasetManifest,
} from '../datasets/shards/manifest.js';
import { writeRecordedArtifact } from './recorded-artifact.js';
import type { ActivityDeps } from './deps.js';

/** A dataset version pinned by its manifest's hash. */
export interface DatasetPin {
  datasetId: string;
  manifestUri: string;
  manifestSha256: string;
}

/** Zero-padded step for file names (sorts by step). */
export const pad9 = (n: number) => String(n).padStart(9, '0');

/**
 * Resolve a dataset reference: `name@v3`, `name@3`, `name` (newest version recorded in lineage) or
 * a manifest URI. Returns the pinned manifest (its sha256) and the parsed manifest.
 */
export async function resolveDatasetRef(
  deps: ActivityDeps,
  ref: string,
): Promise<{ pin: DatasetPin; manifest: DatasetManifest }> {
  let uri: string;
  if (ref.startsWith('file://') || ref.startsWith('s3://')) {
    uri = ref;
  } else {
    const m = /^([A-Za-z0-9._=-]+?)(?:@v?(\d+))?$/.exec(ref);
    if (!m)
      throw new ConfigError(
        `dataset reference ${JSON.stringify(ref)} is not name@vN, name or a manifest URI`,
        'pass e.g. laion-mini@v2 or file:///data/datasets/laion-mini/v2/manifest.json.',
      );
    const version = m[2] ? Number(m[2]) : deps.lineage.latestDatasetVersionNumber(m[1]!);
    if (version < 1)
      throw new ConfigError(
        `no version of dataset ${JSON.stringify(m[1])} is recorded in lineage`,
        'name the version (name@vN) or crawl the dataset first.',
      );
    uri = new DatasetLayout(deps.storage, m[1]!, version).manifestUri;
  }
  if (!(await deps.storage.exists(uri)))
    throw new MissingFileError(
      `dataset manifest ${uri} does not exist`,
      'check the dataset name and version (kiln lineage lists dataset versions), or run the stage that writes it.',
    );
  const text = await deps.storage.readText(uri);
  const manifest = parseManifest(text, uri);
  return { pin: { datasetId: manifest.id, manifestUri: uri, manifestSha256: sha256Hex(text) }, manifest };
}

/** The shards of a pinned dataset version (URI and sha256, manifest order); the manifest must still have the pinned hash. */
export async function pinnedShards(deps: ActivityDeps, pin: DatasetPin): Promise<{ uri: string; sha256: string }[]> {
  const text = await deps.storage.readText(pin.manifestUri);
  if (sha256Hex(text) !== pin.manifestSha256)
    throw new InvalidManifestError(
      pin.manifestUri,
      `its sha256 is no longer ${pin.manifestSha256}, the version this run trains on`,
    );
  const manifest = parseManifest(text, pin.manifestUri);
  const uris = manifestShardUris(deps.storage, manifest);
  return manifest.shards.map((s, i) => ({ uri: uris[i]!, sha256: s.sha256 }));
}

/**
 * Write an immutable run artifact and record it. If lineage already holds this URI with other
 * content (the run was continued by a later job), the new content goes to a sibling named by its
 * hash (`index.<sha12>.html`) instead of editing a recorded artifact.
 */
export async function writeRunArtifact(
  deps: ActivityDeps,
  runId: string,
  a: { uri: string; kind: string; content: string | Uint8Array; metadata?: Record<string, unknown> },
) {
  const sha = sha256Hex(a.content);
  const recorded = deps.lineage.getArtifactByUri(a.uri);
  let uri = a.uri;
  if (recorded && recorded.sha256 !== sha) {
    const slash = uri.lastIndexOf('/');
    const name = uri.slice(slash + 1);
    const dot = name.lastIndexOf('.');
    uri = deps.storage.child(
      uri.slice(0, slash),
      dot > 0 ? `${name.slice(0, dot)}.${sha.slice(0, 12)}${name.slice(dot)}` : `${name}.${sha.slice(0, 12)}`,
    );
  }
  return writeRecordedArtifact(deps, runId, { ...a, uri });
}

/** Link an already-recorded artifact to a run (no-op when it is not recorded). */
export function linkIfRecorded(deps: ActivityDeps, runId: string, uri: string, role: 'consumed' | 'produced'): void {
  const a = deps.lineage.getArtifactByUri(uri);
  if (a) deps.lineage.linkArtifact(runId, a.id, role);
}
