/** Temporal client bootstrap. */
import { Client, Connection } from '@temporalio/client';
import type { KilnConfig } from '../config.js';
import { TemporalUnavailableError } from '../errors.js';

export async function connectClient(config: KilnConfig): Promise<{ client: Client; close(): Promise<void> }> {
  let connection: Connection;
  try {
    connection = await Connection.connect({ address: config.temporalAddress, connectTimeout: 5000 });
  } catch (err) {
    throw new TemporalUnavailableError(
      `cannot connect to Temporal at ${config.temporalAddress}`,
      'run `kiln up` (starts the embedded server and a worker), or point TEMPORAL_ADDRESS at a running server.',
      { cause: err },
    );
  }
  const client = new Client({ connection, namespace: config.namespace });
  return { client, close: () => connection.close() };
}
