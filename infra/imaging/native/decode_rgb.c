/*
 * decode_rgb: the N-API entry point decodeRgb over jpeg_to_rgb.c (JPEG -> RGB as Pillow decodes it),
 * run on the libuv thread pool.
 *
 * JS: decodeRgb(input: Buffer, maxPixels) -> Promise<{data: Buffer, width, height} | undefined>
 * (data: width * height * 3 bytes, RGB interleaved, rows top to bottom; `undefined`: declined).
 */
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include "decode_rgb.h"
#include "jpeg_to_rgb.h"
#include "napi_results.h"

typedef struct {
  kiln_job job; /* first: the shared part (napi_results.h) */
  /* in (the bytes: job.input) */
  double max_pixels;
  /* out */
  uint8_t *pixels;
  int width, height;
} decode_job;

static void run_decode(decode_job *j) {
  const int rc = kiln_decode_rgb_pixels(j->job.input, j->job.input_len, j->max_pixels, &j->pixels, &j->width, &j->height, j->job.message, sizeof j->job.message);
  j->job.declined = rc == KILN_DECLINED;
  j->job.failed = rc == KILN_FAILED;
}

static void execute(napi_env env, void *data) {
  (void)env;
  run_decode((decode_job *)data);
}

static napi_status result(napi_env env, kiln_job *job, napi_value *out) {
  decode_job *j = (decode_job *)job;
  return kiln_rgb_result(env, &j->pixels, j->width, j->height, out);
}

static void complete(napi_env env, napi_status status, void *data) {
  decode_job *j = data;
  kiln_settle_job(env, status, &j->job, "kiln_jpeg.decodeRgb", result);
  free(j->pixels);
  free(j);
}

#define CHECK(call) \
  do { \
    if ((call) != napi_ok) { \
      napi_throw_error(env, NULL, "kiln_jpeg.decodeRgb: " #call " failed"); \
      return NULL; \
    } \
  } while (0)

napi_value kiln_decode_rgb(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 2) {
    napi_throw_type_error(env, NULL, "kiln_jpeg.decodeRgb(input, maxPixels)");
    return NULL;
  }
  bool is_buffer = false;
  CHECK(napi_is_buffer(env, argv[0], &is_buffer));
  if (!is_buffer) {
    napi_throw_type_error(env, NULL, "kiln_jpeg.decodeRgb: input must be a Buffer");
    return NULL;
  }
  double max_pixels;
  CHECK(napi_get_value_double(env, argv[1], &max_pixels));
  decode_job *j = calloc(1, sizeof(decode_job));
  if (!j) {
    napi_throw_error(env, NULL, "kiln_jpeg.decodeRgb: out of memory");
    return NULL;
  }
  j->max_pixels = max_pixels;
  napi_value promise = kiln_queue_job(env, &j->job, argv[0], "kiln_jpeg.decodeRgb", execute, complete);
  if (!promise) free(j);
  return promise;
}
