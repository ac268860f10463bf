/**
 * Runs one training chunk in a fresh process (for the kill-and-resume determinism test):
 *   node chunk-child.js <storageRoot> <json {runUri, config, shards, fromStep, steps}>
 * Prints the chunk result as JSON on the last stdout line. With `--count SIGUSR2` it handles that
 * signal (counting it) instead of dying of it, adds `signals` to the result, and stays up for 1 s
 * after printing so a sender can stop first (signal-safety.test.ts).
 */
import { LocalStorage } from '../../infra/storage.js';
import { runTrainingChunk } from '../../training/run-chunk.js';

const [root, json, flag, signal] = process.argv.slice(2);
let signals = 0;
if (flag === '--count') process.on(signal as NodeJS.Signals, () => (signals += 1));
const args = JSON.parse(json!) as { runUri: string; config: object; shards: string[]; fromStep: number; steps: number };
const result = await runTrainingChunk({
  storage: new LocalStorage(root!),
  runUri: args.runUri,
  config: args.config,
  datasetShardUris: args.shards,
  fromStep: args.fromStep,
  steps: args.steps,
});
process.stdout.write('\n' + JSON.stringify(flag === '--count' ? { ...result, signals } : result) + '\n');
if (flag === '--count') await new Promise((r) => setTimeout(r, 1000));
