/**
 * A row's failure is data, not an exception: a stable reason code (snake_case, matched by code,
 * never by message text), the row status it maps to, and a human detail. `error_message` in the
 * shard is `<reason>: <detail>`.
 */
import type { RowStatus } from '../shards/schema.js';

/** Reason codes with their row status. `http_<code>` reasons (e.g. http_404) are failed_to_download. */
export const FAILURE_STATUS = {
  invalid_url: 'failed_to_download',
  unsupported_scheme: 'failed_to_download',
  blocked_address: 'failed_to_download',
  dns_error: 'failed_to_download',
  connection_error: 'failed_to_download',
  connection_closed: 'failed_to_download',
  timeout: 'failed_to_download',
  too_many_redirects: 'failed_to_download',
  redirect_loop: 'failed_to_download',
  bad_redirect: 'failed_to_download',
  too_large: 'failed_to_download',
  truncated_body: 'failed_to_download',
  empty_body: 'failed_to_download',
  x_robots_tag: 'filtered',
  duplicate_url: 'filtered',
  /** Incremental curation: the URL is already in an earlier dataset version. */
  seen_before: 'filtered',
  /** Incremental curation: the same image bytes (sha256) are already in an earlier dataset version. */
  duplicate_content: 'filtered',
  image_too_small: 'filtered',
  aspect_ratio_too_large: 'filtered',
  not_an_image: 'failed_to_resize',
  decode_error: 'failed_to_resize',
  pixel_limit: 'failed_to_resize',
} as const satisfies Record<string, RowStatus>;

export type FailureReason = keyof typeof FAILURE_STATUS | `http_${number}`;

export interface RowFailure {
  reason: FailureReason;
  detail: string;
}

/** Row status of a reason code. */
export function statusOfReason(reason: FailureReason): RowStatus {
  return reason in FAILURE_STATUS ? FAILURE_STATUS[reason as keyof typeof FAILURE_STATUS] : 'failed_to_download';
}

/** The `error_message` column value of a failure (detail cut to 300 chars, one line). */
export function errorMessage(f: RowFailure): string {
  const detail = f.detail.replace(/\s+/g, ' ').trim().slice(0, 300);
  return detail ? `${f.reason}: ${detail}` : f.reason;
}
