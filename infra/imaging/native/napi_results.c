/* Settling the addon's promises (see napi_results.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "napi_results.h"

void kiln_reject(napi_env env, napi_deferred deferred, const char *message) {
  napi_value msg, e;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &e);
  napi_reject_deferred(env, deferred, e);
}

static void free_pixels(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

napi_status kiln_rgb_result(napi_env env, uint8_t **pixels, int width, int height, napi_value *out) {
  const size_t len = (size_t)width * height * 3;
  napi_value data, w, h;
  napi_status s = napi_create_external_buffer(env, len, *pixels, free_pixels, NULL, &data);
  if (s == napi_ok) {
    *pixels = NULL; /* the Buffer owns them now */
  } else {
    void *copy;
    if ((s = napi_create_buffer_copy(env, len, *pixels, &copy, &data)) != napi_ok) return s;
  }
  if ((s = napi_create_object(env, out)) != napi_ok) return s;
  if ((s = napi_create_int32(env, width, &w)) != napi_ok) return s;
  if ((s = napi_create_int32(env, height, &h)) != napi_ok) return s;
  if ((s = napi_set_named_property(env, *out, "data", data)) != napi_ok) return s;
  if ((s = napi_set_named_property(env, *out, "width", w)) != napi_ok) return s;
  return napi_set_named_property(env, *out, "height", h);
}

napi_value kiln_queue_job(napi_env env, kiln_job *job, napi_value input, const char *name,
                          napi_async_execute_callback execute, napi_async_complete_callback complete) {
  napi_value promise, resource_name;
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, input, &data, &len) != napi_ok) goto fail;
  job->input = malloc(len ? len : 1);
  if (!job->input) goto fail;
  if (len) memcpy(job->input, data, len);
  job->input_len = len;
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
      napi_create_async_work(env, NULL, resource_name, execute, complete, job, &job->work) != napi_ok) {
    goto fail;
  }
  if (napi_queue_async_work(env, job->work) != napi_ok) {
    napi_delete_async_work(env, job->work);
    goto fail;
  }
  return promise;
fail:
  free(job->input);
  job->input = NULL;
  napi_throw_error(env, NULL, "kiln_jpeg: cannot queue the job on the thread pool (out of memory?)");
  return NULL;
}

void kiln_settle_job(napi_env env, napi_status status, kiln_job *job, const char *what,
                     napi_status (*result)(napi_env env, kiln_job *job, napi_value *out)) {
  char text[320];
  napi_value v;
  if (status != napi_ok) {
    snprintf(text, sizeof text, "%s: job cancelled", what);
    kiln_reject(env, job->deferred, text);
  } else if (job->failed) {
    kiln_reject(env, job->deferred, job->message);
  } else if (job->declined) {
    napi_get_undefined(env, &v);
    napi_resolve_deferred(env, job->deferred, v);
  } else if (result(env, job, &v) == napi_ok) {
    napi_resolve_deferred(env, job->deferred, v);
  } else {
    snprintf(text, sizeof text, "%s: cannot create the result (out of memory?)", what);
    kiln_reject(env, job->deferred, text);
  }
  free(job->input);
  job->input = NULL;
  napi_delete_async_work(env, job->work);
}
