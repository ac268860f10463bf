/**
 * The committed workflow histories (test/fixtures/histories/<type>.json, one per workflow type):
 * protobufjs's object form of a Temporal History (longs and bytes as strings, enums by name), which
 * round-trips exactly. (The SDK's historyToJSON / historyFromJSON fail in this install: two
 * protobufjs versions meet.)
 */
import { readFileSync } from 'node:fs';
import proto from '@temporalio/proto';
import { PROJECT_ROOT } from '../../infra/config.js';

export const HISTORIES_DIR = `${PROJECT_ROOT}/test/fixtures/histories`;

type History = proto.temporal.api.history.v1.History;
const { History } = proto.temporal.api.history.v1;

/** `<type>.json`, e.g. crawlWorkflow.json. */
export const historyFile = (workflowType: string) => `${HISTORIES_DIR}/${workflowType}.json`;

export interface StoredHistory {
  workflowId: string;
  workflowType: string;
  history: History;
}

/** The file's text for one history. */
export function historyFileText(
  workflowId: string,
  workflowType: string,
  history: proto.temporal.api.history.v1.IHistory,
): string {
  const object = History.toObject(History.fromObject(history), {
    longs: String,
    enums: String,
    bytes: String,
    defaults: false,
  });
  return `${JSON.stringify({ workflowId, workflowType, history: object }, null, 1)}\n`;
}

/** Read one committed history. */
export function readHistoryFile(path: string): StoredHistory {
  const raw = JSON.parse(readFileSync(path, 'utf8')) as {
    workflowId: string;
    workflowType: string;
    history: Record<string, unknown>;
  };
  return { workflowId: raw.workflowId, workflowType: raw.workflowType, history: History.fromObject(raw.history) };
}
