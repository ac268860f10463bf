/** Read, parse and validate a pipeline spec file; relative paths resolve against the spec's folder. */
import { readFileSync, existsSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { TrainingConfigInput } from '../../training/config.js';
import { resolveTrainingConfigPaths } from './training-paths.js';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigError, MissingFileError } from '../../infra/errors.js';
import { absoluteLocation, isObjectLocation } from '../../infra/location.js';
import { pipelineSpecSchema, type PipelineSpec } from './schema.js';

/** One line per problem: `crawl.image_size: expected number, received string`. */
export function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues.map((i) => `  ${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`).join('\n');
}

export function parseSpecText(text: string, origin: string): PipelineSpec {
  let raw: unknown;
  try {
    raw = origin.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(
      `spec ${origin} is not valid ${origin.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`,
      'fix the syntax at the position given.',
    );
  }
  return validateSpec(raw, origin);
}

/** Validate a spec object (from a file, or built from `kiln run crawl` flags). */
export function validateSpec(
  raw: unknown,
  origin: string,
  fix = 'correct the fields listed above (see docs/pipeline-spec.md for every field and its allowed values).',
): PipelineSpec {
  const parsed = pipelineSpecSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(`spec ${origin} is invalid:\n${formatIssues(parsed.error.issues)}`, fix);
  return parsed.data;
}

/** Load a spec; makes every path in it absolute (relative to the spec file) and checks they exist. */
export function loadSpec(path: string): PipelineSpec {
  if (path.includes('\0')) throw new ConfigError('spec path contains a NUL byte', 'pass a plain file path.');
  if (!existsSync(path))
    throw new MissingFileError(`spec file ${path} does not exist`, 'pass the path of a .yaml or .json pipeline spec.');
  return resolveSpecPaths(parseSpecText(readFileSync(path, 'utf8'), path), dirname(resolve(path)), path);
}

/** Make every path in a spec absolute (relative to `base`) and check the files exist; `origin` names where it came from. */
export function resolveSpecPaths(spec: PipelineSpec, base: string, origin: string): PipelineSpec {
  const path = origin;
  spec.sources.forEach((s, i) => {
    if (s.path.includes('\0'))
      throw new ConfigError(
        `sources.${i}.path contains a NUL byte`,
        `fix sources.${i}.path in ${path}: give a plain file path.`,
      );
  });
  const abs = (p: string) => (isAbsolute(p) || p.startsWith('file://') ? p : absoluteLocation(p, base));
  const mustExist = (p: string, field: string) => {
    if (p.includes('\0'))
      throw new ConfigError(`${field} contains a NUL byte`, `fix ${field} in ${path}: give a plain file path.`);
    if (isObjectLocation(p)) return p; // s3:// model/reference dirs are checked where they are fetched
    const local = p.startsWith('file://') ? new URL(p).pathname : p;
    if (!existsSync(local))
      throw new MissingFileError(
        `${field}: ${local} does not exist`,
        `fix ${field} in ${path} (relative paths are relative to the spec file).`,
      );
    return p;
  };
  spec.sources = spec.sources.map((s, i) => ({ ...s, path: mustExist(abs(s.path), `sources.${i}.path`) }));
  if (spec.filter) {
    spec.filter.clip_model = mustExist(abs(spec.filter.clip_model), 'filter.clip_model');
    if (spec.filter.captioner_model)
      spec.filter.captioner_model = mustExist(abs(spec.filter.captioner_model), 'filter.captioner_model');
  }
  if (spec.train) {
    spec.train.config = resolveTrainingConfigPaths(spec.train.config as TrainingConfigInput, base) as Record<
      string,
      unknown
    >;
    const c = spec.train.config as TrainingConfigInput;
    if (c.codec && typeof c.codec === 'object' && typeof c.codec.vae === 'string')
      mustExist(c.codec.vae, 'train.config.codec.vae');
    if (typeof c.textEncoder?.clipDir === 'string')
      mustExist(c.textEncoder.clipDir, 'train.config.textEncoder.clipDir');
  }
  if (spec.eval) {
    spec.eval.extractor = mustExist(abs(spec.eval.extractor), 'eval.extractor');
    const ref = spec.eval.reference;
    if (ref && !/@v?\d+$/.test(ref)) spec.eval.reference = mustExist(abs(ref), 'eval.reference');
  }
  return spec;
}
