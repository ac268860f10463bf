/* Settling the addon's promises, shared by its entry points (kiln_jpeg.c, decode_rgb.c, pil_resample.c). */
#ifndef KILN_NAPI_RESULTS_H
#define KILN_NAPI_RESULTS_H
#include <node_api.h>
#include <stdint.h>

/* What every asynchronous entry point's job carries (its first member, `job`): its own copy of the
 * input bytes (JS may change, reuse or detach the Buffer's memory while the pool works: the job never
 * reads it after queueing), the promise, the work item, and the outcome. */
typedef struct {
  uint8_t *input;
  size_t input_len;
  napi_deferred deferred;
  napi_async_work work;
  int declined; /* resolve `undefined`: the caller falls back to sharp */
  int failed;   /* reject with `message` */
  char message[264];
} kiln_job;

/* Copy the input Buffer (`input`) into job->input, create the promise and queue `execute` on the
 * libuv pool (`complete` on the JS thread after). Returns the promise, or NULL with a JS exception
 * pending (nothing queued, nothing left allocated in the job). */
napi_value kiln_queue_job(napi_env env, kiln_job *job, napi_value input, const char *name,
                          napi_async_execute_callback execute, napi_async_complete_callback complete);

/* Settle a finished job's promise and free its input copy and work item (not the job's own memory):
 * rejected when cancelled ("<what>: job cancelled") or failed (message), resolved with `undefined`
 * when declined, else with what `result` builds (rejected when it cannot build it). */
void kiln_settle_job(napi_env env, napi_status status, kiln_job *job, const char *what,
                     napi_status (*result)(napi_env env, kiln_job *job, napi_value *out));

/* Reject `deferred` with an Error whose message is `message`. */
void kiln_reject(napi_env env, napi_deferred deferred, const char *message);

/* {data, width, height} for width x height RGB pixels (malloc'd): the Buffer takes *pixels without a
 * copy where the runtime allows (then *pixels becomes NULL), else copies them (the caller frees). */
napi_status kiln_rgb_result(napi_env env, uint8_t **pixels, int width, int height, napi_value *out);

#endif
