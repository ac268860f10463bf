/*
 * kiln_jpeg: the addon's module (three entry points) and `process`, the N-API entry point over
 * jpeg_resize.c (plain YCbCr JPEG in -> resized, placed JPEG out) on the libuv thread pool.
 *
 * JS: process(input: Buffer, rw, rh, cw, ch, ox, oy, quality, maxPixels) -> Promise<Buffer | undefined>
 * (`undefined`: declined, the caller uses sharp; maxPixels: images with more pixels in their header
 * are declined before any decoding). decodeRgb: decode_rgb.c; resizeRgb: pil_resample.c.
 */
#include <node_api.h>
#include <stdint.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include "decode_rgb.h"
#include "jpeg_resize.h"
#include "napi_results.h"
#include "pil_resample.h"

typedef struct {
  kiln_job job; /* first: the shared part (napi_results.h) */
  /* in (the bytes: job.input) */
  kiln_resize_params params;
  /* out */
  uint8_t *out;
  size_t out_len;
} job_t;

/* Test-only switch for the chaos suite (chaos/, test/chaos): with KILN_TEST_NATIVE_ABORT_BYTES=<n>, a
 * process() call on an input of exactly n bytes aborts the whole process on the worker thread, as a
 * memory-safety bug in this addon would. Never set outside tests. */
static void test_abort_switch(size_t in_len) {
  const char *e = getenv("KILN_TEST_NATIVE_ABORT_BYTES");
  if (e && *e && strtoull(e, NULL, 10) == (unsigned long long)in_len) abort();
}

static void execute(napi_env env, void *data) {
  (void)env;
  job_t *j = data;
  test_abort_switch(j->job.input_len);
  const int rc = kiln_jpeg_resize(j->job.input, j->job.input_len, &j->params, &j->out, &j->out_len, j->job.message, sizeof j->job.message);
  j->job.declined = rc == KILN_DECLINED;
  j->job.failed = rc == KILN_FAILED;
}

static napi_status result(napi_env env, kiln_job *job, napi_value *out) {
  job_t *j = (job_t *)job;
  void *copy;
  return napi_create_buffer_copy(env, j->out_len, j->out, &copy, out);
}

static void complete(napi_env env, napi_status status, void *data) {
  job_t *j = data;
  kiln_settle_job(env, status, &j->job, "kiln_jpeg", result);
  free(j->out);
  free(j);
}

#define CHECK(call) \
  do { \
    if ((call) != napi_ok) { \
      napi_throw_error(env, NULL, "kiln_jpeg: " #call " failed"); \
      return NULL; \
    } \
  } while (0)

static napi_value js_process(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 9) {
    napi_throw_type_error(env, NULL, "kiln_jpeg.process(input, rw, rh, cw, ch, ox, oy, quality, maxPixels)");
    return NULL;
  }
  bool is_buffer = false;
  CHECK(napi_is_buffer(env, argv[0], &is_buffer));
  if (!is_buffer) {
    napi_throw_type_error(env, NULL, "kiln_jpeg.process: input must be a Buffer");
    return NULL;
  }
  int32_t n[7];
  for (int i = 0; i < 7; i++) CHECK(napi_get_value_int32(env, argv[i + 1], &n[i]));
  kiln_resize_params params = {n[0], n[1], n[2], n[3], n[4], n[5], n[6], 0};
  CHECK(napi_get_value_double(env, argv[8], &params.max_pixels));
  if (!kiln_resize_params_ok(&params)) {
    napi_throw_range_error(env, NULL, "kiln_jpeg.process: size, offset or quality out of range");
    return NULL;
  }
  job_t *j = calloc(1, sizeof(job_t));
  if (!j) {
    napi_throw_error(env, NULL, "kiln_jpeg: out of memory");
    return NULL;
  }
  j->params = params;
  napi_value promise = kiln_queue_job(env, &j->job, argv[0], "kiln_jpeg", execute, complete);
  if (!promise) free(j);
  return promise;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn, version;
  if (napi_create_function(env, "process", NAPI_AUTO_LENGTH, js_process, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "process", fn);
  if (napi_create_function(env, "decodeRgb", NAPI_AUTO_LENGTH, kiln_decode_rgb, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "decodeRgb", fn);
  if (napi_create_function(env, "resizeRgb", NAPI_AUTO_LENGTH, kiln_resize_rgb, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "resizeRgb", fn);
  napi_create_int32(env, LIBJPEG_TURBO_VERSION_NUMBER, &version);
  napi_set_named_property(env, exports, "libjpegTurboVersion", version);
  return exports;
}

NAPI_MODULE(kiln_jpeg, init)
