/**
 * Loaded filter models, kept for the life of a worker process: loading CLIP and a captioner (ONNX
 * sessions, tokenizers, on CUDA a device context) costs seconds, so every shard of every filter job
 * that asks for the same model directory and options reuses the same sessions.
 *
 * Each model is keyed by (directory, device request, batch size, generation options, file hashes).
 * On load the model's files are hashed and must equal the hashes the plan pinned: a model directory
 * edited in place after planning is a ModelFilesChangedError, never silently mixed into one version.
 * At most `maxPerKind` idle models per kind are kept; older idle ones are disposed.
 */
import { KilnError } from '../../infra/errors.js';
import type { OnnxDeviceRequest } from '../../infra/onnx-runtime.js';
import { loadCaptioner, type Captioner, type CaptionerOptions } from './captioner.js';
import { loadClipScorer, type ClipScorer, type ClipScorerOptions } from './clip-scorer.js';
import type { FilterModels } from './filter-batch.js';
import type { ModelFileHash } from './model-dir.js';
import type { PlannedCaptionOptions, PlannedModel } from './stage-plan.js';

/** A model directory whose files differ from the hashes a plan pinned. */
export class ModelFilesChangedError extends KilnError {
  constructor(dir: string, detail: string) {
    super(
      'KILN_MODEL_CHANGED',
      `model directory ${dir} changed since the filter run was planned (${detail})`,
      'restore the model files the run was planned with, or start a new filter run (it will write a new dataset version pinned to the new files).',
    );
  }
}

/** What a shard needs loaded. */
export interface FilterModelRequest {
  clip: PlannedModel;
  captioner: (PlannedModel & { options: PlannedCaptionOptions }) | null;
  batchSize: number;
  device: OnnxDeviceRequest;
}

/** Models on loan to one shard; call `release` when the shard is done with them. */
export interface FilterModelLease {
  models: FilterModels;
  reused: boolean;
  release(): void;
}

interface Entry<M> {
  model: Promise<M>;
  users: number;
  lastUsed: number;
}
interface Borrowed<M> {
  model: Promise<M>;
  reused: boolean;
  release(): void;
}

/** The loaders (injectable for tests). */
export interface FilterModelLoaders {
  clip(dir: string, opts: ClipScorerOptions): Promise<ClipScorer>;
  captioner(dir: string, opts: CaptionerOptions): Promise<Captioner>;
}

const realLoaders: FilterModelLoaders = { clip: loadClipScorer, captioner: loadCaptioner };

function compareHashes(dir: string, expected: readonly ModelFileHash[], actual: readonly ModelFileHash[]): void {
  const want = new Map(expected.map((f) => [f.path, f.sha256]));
  const have = new Map(actual.map((f) => [f.path, f.sha256]));
  const changed = [...new Set([...want.keys(), ...have.keys()])].filter((p) => want.get(p) !== have.get(p));
  if (changed.length > 0)
    throw new ModelFilesChangedError(
      dir,
      `files differ: ${changed.slice(0, 5).join(', ')}${changed.length > 5 ? ', ...' : ''}`,
    );
}

/** A per-process cache of loaded CLIP scorers and captioners. */
export class FilterModelCache {
  private readonly clips = new Map<string, Entry<ClipScorer>>();
  private readonly captioners = new Map<string, Entry<Captioner>>();
  /** Models loaded so far (for tests and logs). */
  loads = 0;
  private tick = 0;

  constructor(private readonly opts: { maxPerKind?: number; loaders?: FilterModelLoaders } = {}) {}

  /** Borrow the models a shard needs, loading (and verifying) the ones not cached yet. */
  async acquire(req: FilterModelRequest): Promise<FilterModelLease> {
    const loaders = this.opts.loaders ?? realLoaders;
    const hashKey = (files: readonly ModelFileHash[]) => files.map((f) => `${f.path}:${f.sha256}`).join(',');
    const clipKey = JSON.stringify([req.clip.dir, req.device, req.batchSize, hashKey(req.clip.files)]);
    const clip = this.borrow(this.clips, clipKey, async () => {
      const m = await loaders.clip(req.clip.dir, { device: req.device, batchSize: req.batchSize });
      return this.verified(m, req.clip);
    });
    let cap: Borrowed<Captioner> | null = null;
    if (req.captioner) {
      const c = req.captioner;
      const capKey = JSON.stringify([c.dir, req.device, req.batchSize, c.options, hashKey(c.files)]);
      cap = this.borrow(this.captioners, capKey, async () => {
        const m = await loaders.captioner(c.dir, {
          device: req.device,
          batchSize: req.batchSize,
          maxNewTokens: c.options.maxNewTokens,
          numBeams: c.options.numBeams,
          ...(c.options.prompt ? { prompt: c.options.prompt } : {}),
          ...(c.options.candidates ? { candidates: c.options.candidates.count } : {}),
          ...(c.options.candidates?.from === 'sampling'
            ? {
                sampling: {
                  seed: c.options.candidates.seed,
                  temperature: c.options.candidates.temperature,
                  topP: c.options.candidates.topP,
                },
              }
            : {}),
        });
        return this.verified(m, c);
      });
    }
    const release = () => {
      clip.release();
      cap?.release();
    };
    try {
      const models: FilterModels = { scorer: await clip.model, captioner: cap ? await cap.model : undefined };
      return { models, reused: clip.reused && (cap?.reused ?? true), release };
    } catch (err) {
      release();
      throw err;
    }
  }

  /** Dispose every cached model (worker shutdown). */
  async dispose(): Promise<void> {
    const all = [...this.clips.values(), ...this.captioners.values()];
    this.clips.clear();
    this.captioners.clear();
    await Promise.all(
      all.map((e) =>
        e.model.then(
          (m) => m.dispose(),
          () => undefined,
        ),
      ),
    );
  }

  private async verified<M extends ClipScorer | Captioner>(m: M, planned: PlannedModel): Promise<M> {
    this.loads++;
    try {
      compareHashes(planned.dir, planned.files, await m.fileHashes());
      return m;
    } catch (err) {
      await m.dispose();
      throw err;
    }
  }

  private borrow<M extends { dispose(): Promise<void> }>(
    map: Map<string, Entry<M>>,
    key: string,
    load: () => Promise<M>,
  ): Borrowed<M> {
    let entry = map.get(key);
    const reused = entry !== undefined;
    if (!entry) {
      entry = { model: load(), users: 0, lastUsed: 0 };
      map.set(key, entry);
      // A failed load is not cached: the next shard tries again.
      entry.model.catch(() => {
        if (map.get(key) === entry) map.delete(key);
      });
    }
    const e = entry;
    e.users++;
    e.lastUsed = ++this.tick;
    let released = false;
    return {
      model: e.model,
      reused,
      release: () => {
        if (released) return;
        released = true;
        e.users--;
        this.evict(map);
      },
    };
  }

  private evict<M extends { dispose(): Promise<void> }>(map: Map<string, Entry<M>>): void {
    const max = this.opts.maxPerKind ?? 2;
    const idle = [...map.entries()].filter(([, e]) => e.users === 0).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    while (map.size > max && idle.length > 0) {
      const [key, e] = idle.shift()!;
      map.delete(key);
      void e.model.then(
        (m) => m.dispose(),
        () => undefined,
      );
    }
  }
}
