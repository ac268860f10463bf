/**
 * `kiln run <stage>`: registers every stage command under `kiln run`. The stage files import the
 * job runner (run.ts), never each other, and run.ts imports none of them (no import cycle).
 */
import type { Command } from 'commander';
import { runWorkflow, withRunFlags, type RunFlags } from './run.js';
import { registerPipelineCommand } from './pipeline.js';
import { registerTrainCommands } from './train.js';
import { registerFilterCommand } from './filter.js';
import { registerCrawlCommand } from './crawl.js';

export function registerRun(program: Command): void {
  const run = program
    .command('run')
    .description('Run a stage as a durable Temporal workflow and wait for it (see `kiln run <stage> --help`).');
  withRunFlags(
    run
      .command('hello')
      .description('The smallest stage: writes a greeting artifact and a summary, both recorded in lineage.')
      .option('--message <text>', 'the greeting to write', 'hello from kiln')
      .option('--pause-ms <ms>', 'durable pause between the two steps', (v) => Number(v), 0),
  ).action(async (o: RunFlags & { message: string; pauseMs: number }) => {
    process.exitCode = await runWorkflow('hello', 'helloWorkflow', { message: o.message, pauseMs: o.pauseMs }, o);
  });
  registerPipelineCommand(run);
  registerCrawlCommand(run);
  registerTrainCommands(run);
  registerFilterCommand(run);
}
