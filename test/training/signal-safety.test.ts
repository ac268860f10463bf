/**
 * A training process keeps its memory intact and trains the same weights while signals arrive.
 *
 * Workers receive signals in normal operation (SIGCHLD from child processes, SIGINT/SIGTERM on
 * shutdown, SIGPROF under a profiler). TensorFlow 2.18's MatMul op on CPU (oneDNN's sgemm, reached
 * through both _MklMatMul and Eigen's contraction) corrupts the heap when a signal lands while it runs:
 * with linear layers on MatMul, this test's child died of SIGSEGV or "corrupted size vs. prev_size"
 * within 150 steps (measured while choosing the trainer's ops; see training/native-ops.ts). Kiln's
 * native ops avoid it (BatchMatMulV2, whose oneDNN matmul primitive is unaffected); this test keeps
 * it so: a real training chunk of the default tiny config in a child process under a storm of
 * SIGUSR2 (handled by the child), which must exit 0 with the same losses and byte-identical
 * checkpoint files as the same chunk run without signals.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { selectTfBackend } from '../../infra/tfjs-backend.js';
import { resolveTrainingConfig } from '../../training/config.js';
import { opThreadsFor } from '../../training/op-threads.js';
import { runTrainingChunk, type TrainingChunkResult } from '../../training/run-chunk.js';
import { nativeBackend } from '../../training/native-ops.js';
import { tempStorage, twoShardDataset } from './shard-fixtures.js';

const STEPS = 60;
const CONFIG = { totalSteps: 1000, checkpoint: { keepLast: 1 } };
// The thread count the chunk itself would choose, so the quiet run here and the child's agree bit for bit.
await selectTfBackend({ opThreads: opThreadsFor(resolveTrainingConfig(CONFIG)) });
const skip = nativeBackend() ? false : 'native TensorFlow (tfjs-node) is not the active backend';

/** Run the chunk in a child while sending it SIGUSR2 in bursts until it prints its result. */
async function chunkUnderSignals(
  root: string,
  args: object,
): Promise<{ code: number | null; signal: string | null; out: string }> {
  const script = fileURLToPath(new URL('./chunk-child.js', import.meta.url));
  const child = spawn(process.execPath, [script, root, JSON.stringify(args), '--count', 'SIGUSR2'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  // Start once the child can count (its handler is installed before the chunk begins).
  await new Promise((r) => setTimeout(r, 1500));
  const storm = setInterval(() => {
    if (out.includes('"signals"') || child.exitCode !== null || child.signalCode !== null) return;
    for (let i = 0; i < 50; i++) child.kill('SIGUSR2');
  }, 5);
  const [code, signal] = (await new Promise((r) => child.on('close', (c, s) => r([c, s])))) as [
    number | null,
    string | null,
  ];
  clearInterval(storm);
  return { code, signal, out: out + (code === 0 ? '' : `\n--- stderr ---\n${err.slice(-2000)}`) };
}

void test(
  `a training chunk (${STEPS} steps, tiny config) under a SIGUSR2 storm exits cleanly with the weights of a quiet run`,
  { skip, timeout: 300_000 },
  async () => {
    const { storage, root, cleanup } = await tempStorage();
    try {
      const shards = await twoShardDataset(storage);
      const quiet = await runTrainingChunk({
        storage,
        runUri: storage.uri('runs', 'quiet'),
        config: CONFIG,
        datasetShardUris: shards,
        fromStep: 0,
        steps: STEPS,
      });
      const run = await chunkUnderSignals(root, {
        runUri: storage.uri('runs', 'stormy'),
        config: CONFIG,
        shards,
        fromStep: 0,
        steps: STEPS,
      });
      assert.equal(run.signal, null, `the child died of ${run.signal}:\n${run.out}`);
      assert.equal(run.code, 0, `the child exited ${run.code}:\n${run.out}`);
      const stormy = JSON.parse(run.out.trim().split('\n').pop()!) as TrainingChunkResult & { signals: number };
      assert.ok(stormy.signals >= 1000, `only ${stormy.signals} signals reached the child: the storm did not happen`);
      assert.equal(stormy.backend, 'tensorflow');
      assert.deepEqual(stormy.losses, quiet.losses);
      assert.deepEqual(stormy.sha256s, quiet.sha256s, 'model, EMA, optimizer and state.json are byte-identical');
    } finally {
      await cleanup();
    }
  },
);
