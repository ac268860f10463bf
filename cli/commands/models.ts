/**
 * `kiln models import <kind> <source> --out <dir>`: a local checkpoint -> the model directory Kiln
 * loads, checked against PyTorch. The export and check run in scripts/models/import_model.py in the
 * models venv (.venv-models: pinned torch / transformers / optimum / diffusers / pytorch-fid, installed
 * by scripts/setup.sh); it writes <dir>/kiln-model.json (source and output files with sha256, the check,
 * tool versions). This command then checks the directory loads as its kind and records the import in
 * lineage (job kind `models.import`: source files consumed, model files and the manifest produced).
 */
import type { Command } from 'commander';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { modelFileUri } from '../../activities/filter.js';
import { checkModelDir } from '../../datasets/filter/model-dir.js';
import { codeVersion } from '../../infra/code-version.js';
import { ensureDataRoot, loadConfig, PROJECT_ROOT } from '../../infra/config.js';
import { ConfigError, KilnError, MissingFileError } from '../../infra/errors.js';
import { sha256File } from '../../infra/hash.js';
import { LineageStore } from '../../infra/lineage/store.js';
import { newJobId } from '../session.js';

/** Kinds `kiln models import` takes (captioner: ViT-GPT2 or BLIP, told by the checkpoint's config.json). */
export const IMPORT_KINDS = ['clip', 'captioner', 'vae', 'fid-inception'] as const;
export type ImportKind = (typeof IMPORT_KINDS)[number];
export const IMPORT_MANIFEST = 'kiln-model.json';

interface FileHash {
  path: string;
  sha256: string;
  bytes: number;
}
/** What scripts/models/import_model.py writes to <out>/kiln-model.json. */
export interface ImportManifest {
  format: string;
  kind: ImportKind;
  type: string;
  source: { path: string; files: FileHash[] };
  output: { files: FileHash[] };
  check: { what: string; tolerance: number; max_rel_diff?: number; max_abs_diff?: number };
  tools: Record<string, string>;
}

/** The models venv's python (KILN_MODELS_PYTHON overrides it). */
function modelsPython(): string {
  const py = process.env['KILN_MODELS_PYTHON'] ?? join(PROJECT_ROOT, '.venv-models', 'bin', 'python');
  if (!existsSync(py)) {
    throw new MissingFileError(
      `the models venv's python ${py} is missing`,
      'run `npm run setup` (it creates .venv-models from requirements-models.txt), or point KILN_MODELS_PYTHON at a python with those packages.',
    );
  }
  return py;
}

function runImporter(kind: ImportKind, source: string, out: string): Promise<void> {
  const script = join(PROJECT_ROOT, 'scripts', 'models', 'import_model.py');
  return new Promise((done, fail) => {
    const child = spawn(modelsPython(), [script, kind, source, '--out', out], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env: {
        ...process.env,
        TOKENIZERS_PARALLELISM: 'false',
        HF_HUB_OFFLINE: '1',
        TRANSFORMERS_OFFLINE: '1',
        HF_DATASETS_OFFLINE: '1',
      },
    });
    child.on('error', fail);
    child.on('exit', (code, signal) => {
      if (code === 0) done();
      else
        fail(
          new ConfigError(
            `importing ${kind} from ${source} failed (${signal ?? `exit ${code}`}); the importer's message is above`,
            'fix what the importer\'s message names (its "Fix:" line) and run the same command again.',
          ),
        );
    });
  });
}

/** Import, check the result loads as `kind`, record lineage. Returns the manifest. */
export async function importModel(kind: string, source: string, out: string): Promise<ImportManifest> {
  if (!(IMPORT_KINDS as readonly string[]).includes(kind)) {
    throw new ConfigError(`unknown model kind ${JSON.stringify(kind)}`, `use one of ${IMPORT_KINDS.join(', ')}.`);
  }
  const src = resolve(source);
  const dest = resolve(out);
  if (!existsSync(src))
    throw new MissingFileError(
      `the checkpoint ${src} does not exist`,
      'pass a local directory (e.g. from `huggingface-cli download REPO --local-dir DIR`); Kiln never downloads models.',
    );
  await runImporter(kind as ImportKind, src, dest);
  const manifestPath = join(dest, IMPORT_MANIFEST);
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as ImportManifest;
  if (kind === 'clip' || kind === 'captioner') await checkModelDir(dest, kind);
  recordImport(manifest, dest, manifestPath, await sha256File(manifestPath));
  return manifest;
}

function recordImport(m: ImportManifest, dest: string, manifestPath: string, manifestSha: string): void {
  const config = loadConfig();
  ensureDataRoot(config);
  const store = new LineageStore(config.lineagePath);
  try {
    const jobId = newJobId('models-import');
    const params = { kind: m.kind, type: m.type, source: m.source.path, out: dest, check: m.check, tools: m.tools };
    store.startJob({ id: jobId, kind: 'models.import', workflowId: jobId, params, codeVersion: codeVersion() });
    const runId = `${jobId}/import`;
    store.startRun({ id: runId, jobId, stage: 'models.import', params, codeVersion: codeVersion() });
    for (const f of m.source.files) {
      store.recordArtifactOfRun(runId, 'consumed', {
        uri: modelFileUri(m.source.path, f.path, f.sha256),
        kind: 'model.source-file',
        sha256: f.sha256,
        bytes: f.bytes,
        metadata: { model: m.kind, path: f.path },
      });
    }
    for (const f of m.output.files) {
      store.recordArtifactOfRun(runId, 'produced', {
        uri: modelFileUri(dest, f.path, f.sha256),
        kind: 'model.file',
        sha256: f.sha256,
        bytes: f.bytes,
        metadata: { model: m.kind, type: m.type, dir: dest, path: f.path },
      });
    }
    store.recordArtifactOfRun(runId, 'produced', {
      uri: modelFileUri(dest, IMPORT_MANIFEST, manifestSha),
      kind: 'model.import-manifest',
      sha256: manifestSha,
      bytes: readFileSync(manifestPath).length,
      metadata: { model: m.kind, type: m.type },
    });
    store.finishRun(runId, 'completed', { check: m.check });
    store.finishJob(jobId, 'completed');
  } finally {
    store.close();
  }
}

export function registerModels(program: Command): void {
  const models = program
    .command('models')
    .description('Bring your own models: turn local checkpoints into verified Kiln model directories.');
  models
    .command('import')
    .description(
      'Export a local checkpoint to the layout Kiln loads (ONNX), check it against PyTorch, write kiln-model.json, record it in lineage. ' +
        'Kinds: clip (CLIPModel), captioner (VisionEncoderDecoder ViT-GPT2 style, or BLIP), vae (diffusers AutoencoderKL, or a pipeline dir with vae/), ' +
        "fid-inception (pytorch-fid's pt_inception-2015-12-05-*.pth, or a dir holding it). No network is used.",
    )
    .argument('<kind>', IMPORT_KINDS.join(' | '))
    .argument('<source>', 'local checkpoint directory (or the .pth file for fid-inception)')
    .requiredOption('--out <dir>', 'new or empty output directory')
    .option('--json', 'print the manifest as JSON', false)
    .action(async (kind: string, source: string, o: { out: string; json: boolean }) => {
      const m = await importModel(kind, source, o.out).catch((err: unknown) => {
        throw err instanceof KilnError ? err : new ConfigError(String(err), 'see the message above.');
      });
      if (o.json) {
        process.stdout.write(`${JSON.stringify(m)}\n`);
        return;
      }
      const diff = m.check.max_abs_diff ?? m.check.max_rel_diff;
      process.stdout.write(
        `imported ${m.kind} (${m.type}) -> ${resolve(o.out)}\n  check: ${m.check.what}: max |diff| ${diff?.toExponential(2)} <= ${m.check.tolerance}\n` +
          `  ${m.output.files.length} files; manifest ${join(resolve(o.out), IMPORT_MANIFEST)}; recorded in lineage (kiln lineage jobs)\n`,
      );
    });
}
