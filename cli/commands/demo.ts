/** `kiln demo`: the main job. For now the hello stage end to end; grows into the full pipeline demo. */
import type { Command } from 'commander';
import { runWorkflow } from './run.js';

export function registerDemo(program: Command): void {
  program.command('demo')
    .description('Run the demo job end to end on this machine (embedded Temporal, in-process worker).')
    .option('--json', 'print machine-readable JSON on stdout', false)
    .action(async (o: { json: boolean }) => {
      process.exitCode = await runWorkflow('hello', 'helloWorkflow', { message: 'hello from the kiln demo' }, { json: o.json });
    });
}
