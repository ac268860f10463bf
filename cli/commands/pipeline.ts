/** `kiln run pipeline <spec>` (shorthand: `kiln run spec.yaml`): the whole pipeline from one spec file. */
import type { Command } from 'commander';
import { loadSpec } from '../spec/load.js';
import { pipelineInputFromSpec } from '../spec/to-input.js';
import { runWorkflow, bar, withRunFlags, type RunFlags } from './run.js';
import { specIdentity } from '../spec/identity.js';
import { withFinishedStages } from '../finished-stages.js';
import type { PipelineProgress } from '../../workflows/pipeline.js';

/** One status line for a pipeline: stage list with the current one marked. */
export function formatPipelineProgress(p: unknown): string | null {
  const prog = p as PipelineProgress | null;
  if (!prog?.stages) return null;
  const done = prog.stages.filter((s) => s.status === 'completed').length;
  const marks = prog.stages.map((s) => `${s.stage}:${s.status === 'completed' ? 'done' : s.status}`).join('  ');
  return `pipeline ${bar(done, prog.stages.length)}  ${marks}`;
}

export function registerPipelineCommand(run: Command): void {
  withRunFlags(
    run
      .command('pipeline')
      .description(
        'Run a whole pipeline (sources -> crawl -> filter/caption -> train + eval) from a YAML or JSON spec ' +
          '(see docs/pipeline-spec.md). The job id derives from the spec, so rerunning the same spec attaches to ' +
          'its job, resumes it after a crash, or prints the finished result. Shorthand: kiln run spec.yaml',
      )
      .argument('<spec>', 'pipeline spec file (.yaml, .yml or .json)'),
    { derivedId: true },
  ).action(async (specPath: string, o: RunFlags) => {
    const spec = loadSpec(specPath);
    const input = pipelineInputFromSpec(spec);
    process.exitCode = await runWorkflow(
      'pipeline',
      'pipelineWorkflow',
      input,
      {
        ...o,
        identity: specIdentity(spec),
        restartInput: (client, id) => withFinishedStages(client, id, input),
      },
      formatPipelineProgress,
    );
  });
}
