/**
 * buildLatentCache (kiln-gpu): the latents of a frozen VAE for every image of a dataset version,
 * computed once (training/latent-cache.ts) so that training reads them instead of re-encoding.
 *
 * Input: the job, the pinned dataset version and the training config (its `codec.vae` and
 * `resolution` decide the cache). Heartbeats {shard, shards, rows, encodedShards, reusedShards}.
 * Idempotent and resumable per shard: a cached shard's path is a pure function of (VAE files,
 * resolution, dataset shard sha256) and is written atomically, so a retry after a killed worker
 * re-encodes only the shards that were not finished, and a repeat encodes nothing.
 * Lineage: run `${jobId}/latents` consumes the dataset manifest and produces the latent shards
 * (kind `latent-shard`) and the cache manifest (kind `latent-cache`, metadata: dataset id, VAE name
 * and sha256, resolution), so lineage answers which dataset version and which VAE made which cache.
 * Start-to-close: the workflow's chunk timeout; retry: everything but ConfigError / MissingFileError.
 */
import { ConfigError } from '../infra/errors.js';
import { resolveTrainingConfig, type TrainingConfigInput } from '../training/config.js';
import type { ActivityDeps } from './deps.js';
import { activityContext, withRun } from './run-lifecycle.js';
import { linkIfRecorded, pinnedShards, type DatasetPin } from './run-artifacts.js';

export interface LatentCacheInput {
  jobId: string;
  dataset: DatasetPin;
  config: TrainingConfigInput;
}

/** Where a dataset version's latents are: the cache manifest (pinned by sha256) and what it took. */
export interface LatentCacheRef {
  manifestUri: string;
  sha256: string;
  vae: string;
  vaeSha256: string;
  resolution: number;
  shards: number;
  encodedShards: number;
  reusedShards: number;
}

export function createLatentCacheActivities(deps: ActivityDeps) {
  const { storage, lineage } = deps;
  return {
    /** Encode the dataset version's images with the config's VAE, once; see the module comment. */
    async buildLatentCache(input: LatentCacheInput): Promise<LatentCacheRef> {
      const ctx = activityContext();
      const config = resolveTrainingConfig(input.config);
      if (config.codec === 'identity')
        throw new ConfigError(
          'buildLatentCache needs a VAE codec, and the config trains in pixel space',
          'set config.codec to { vae: "<dir>" }, or train without a latent cache.',
        );
      const [{ createLatentCodec }, { assertCodecFits }, cache] = await Promise.all([
        import('../training/latent-codec.js'),
        import('../training/model.js'),
        import('../training/latent-cache.js'),
      ]);
      const shards = await pinnedShards(deps, input.dataset);
      const codec = await createLatentCodec(config.codec);
      try {
        assertCodecFits(config, codec);
        const runId = `${input.jobId}/latents`;
        return await withRun(
          deps,
          {
            id: runId,
            jobId: input.jobId,
            stage: 'train.latents',
            params: {
              dataset: input.dataset.datasetId,
              datasetManifestUri: input.dataset.manifestUri,
              vae: codec.name,
              vaeSha256: codec.sha256,
              resolution: config.resolution,
            },
            environment: { attempt: ctx?.info.attempt ?? 1 },
          },
          async () => {
            linkIfRecorded(deps, runId, input.dataset.manifestUri, 'consumed');
            const built = await cache.buildLatentCache({
              storage,
              shards,
              codec,
              resolution: config.resolution,
              signal: ctx?.cancellationSignal,
              onProgress: (p) => ctx?.heartbeat(p),
            });
            const { manifest } = built;
            const about = { vae: manifest.vae, vaeSha256: manifest.vaeSha256, resolution: manifest.resolution };
            for (const s of manifest.shards) {
              lineage.recordArtifactOfRun(runId, 'produced', {
                uri: s.uri,
                kind: 'latent-shard',
                sha256: s.sha256,
                bytes: (await storage.size(s.uri)) ?? 0,
                metadata: { ...about, source: s.source, sourceSha256: s.sourceSha256, rows: s.rows },
              });
            }
            lineage.recordArtifactOfRun(runId, 'produced', {
              uri: built.manifestUri,
              kind: 'latent-cache',
              sha256: built.manifestSha256,
              bytes: (await storage.size(built.manifestUri)) ?? 0,
              metadata: {
                ...about,
                datasetId: input.dataset.datasetId,
                datasetManifestUri: input.dataset.manifestUri,
                shape: manifest.shape,
              },
            });
            return {
              manifestUri: built.manifestUri,
              sha256: built.manifestSha256,
              ...about,
              shards: manifest.shards.length,
              encodedShards: built.encodedShards,
              reusedShards: built.reusedShards,
            };
          },
        );
      } finally {
        await codec.dispose();
      }
    },
  };
}
