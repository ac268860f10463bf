/**
 * Runs one training chunk in a fresh process (for the kill-and-resume determinism test):
 *   node chunk-child.js <storageRoot> <json {runUri, config, shards, fromStep, steps}>
 * Prints the chunk result as JSON on the last stdout line.
 */
import { LocalStorage } from '../../infra/storage.js';
import { runTrainingChunk } from '../../training/run-chunk.js';

const [root, json] = process.argv.slice(2);
const args = JSON.parse(json!) as { runUri: string; config: object; shards: string[]; fromStep: number; steps: number };
const result = await runTrainingChunk({
  storage: new LocalStorage(root!),
  runUri: args.runUri,
  config: args.config,
  datasetShardUris: args.shards,
  fromStep: args.fromStep,
  steps: args.steps,
});
process.stdout.write('\n' + JSON.stringify(result) + '\n');
