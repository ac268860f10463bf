/** Temporal client bootstrap. */
import { Client, Connection, defaultGrpcRetryOptions, makeGrpcRetryInterceptor } from '@temporalio/client';
import type { KilnConfig } from '../config.js';
import { TemporalUnavailableError } from '../errors.js';

/**
 * The SDK's gRPC retry policy, made safe to close: the SDK schedules a retry with a timer that
 * cannot be cancelled, and a retry that fires after `connection.close()` throws "Channel has been
 * shut down" from the timer, an uncaught exception that kills the CLI after its job has finished.
 * Once closing, failed calls are not retried (their callers see the error), and `settled()` resolves
 * when every retry already scheduled has fired, so the channel is closed only after that.
 */
function closableRetry(): { interceptor: ReturnType<typeof makeGrpcRetryInterceptor>; close(): Promise<void> } {
  const sdk = defaultGrpcRetryOptions();
  let closing = false;
  let lastRetryAt = 0;
  const interceptor = makeGrpcRetryInterceptor({
    retryableDecider: (attempt, status) => !closing && sdk.retryableDecider(attempt, status),
    delayFunction: (attempt, status) => {
      const ms = sdk.delayFunction(attempt, status);
      lastRetryAt = Math.max(lastRetryAt, Date.now() + ms);
      return ms;
    },
  });
  return {
    interceptor,
    async close() {
      closing = true;
      const wait = lastRetryAt - Date.now();
      // Let scheduled retries fire on the open channel (their result reaches the caller, not a timer).
      if (wait > -50) await new Promise((r) => setTimeout(r, Math.max(wait, 0) + 50));
    },
  };
}

export async function connectClient(config: KilnConfig): Promise<{ client: Client; close(): Promise<void> }> {
  let connection: Connection;
  const retry = closableRetry();
  try {
    connection = await Connection.connect({
      address: config.temporalAddress,
      connectTimeout: 5000,
      interceptors: [retry.interceptor],
    });
  } catch (err) {
    throw new TemporalUnavailableError(
      `cannot connect to Temporal at ${config.temporalAddress}`,
      'run `kiln up` (starts the embedded server and a worker), or point TEMPORAL_ADDRESS at a running server.',
      { cause: err },
    );
  }
  const client = new Client({ connection, namespace: config.namespace });
  return {
    client,
    close: async () => {
      await retry.close();
      await connection.close();
    },
  };
}
