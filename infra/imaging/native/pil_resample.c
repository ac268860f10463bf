/*
 * resizeRgb: the filter models' image resize (Pillow 13's 8-bit `Image.resize`, restricted to an
 * output box such as transformers' centre crop) on the libuv thread pool, fused with the JPEG decode
 * (decode_rgb.c's, Pillow's bytes) so that one call turns encoded bytes into the model-size crop.
 * It can also resize raw RGB (`jpeg` false), which the tests use against Pillow's fixture.
 *
 * The coefficients are NOT computed here: infra/imaging/pil-resample.ts computes them (the port of
 * Pillow's precompute_coeffs, double precision, 22-bit fixed point) and passes them in `plan`, with
 * the pass order, so the arithmetic that could differ between C's libm and V8 happens once, in JS,
 * and this file repeats pilResize's integer passes: int32 sums from 1 << 21, arithmetic shift by 22,
 * clip to 0..255 (Pillow's ImagingResampleHorizontal_8bpc / ImagingResampleVertical_8bpc).
 *
 * plan (Int32Array), all in pixels:
 *   [0] inWidth [1] inHeight: the image the plan is for (a JPEG of another size is declined)
 *   [2] left [3] top [4] width [5] height: the output box (the result is width x height)
 *   [6] 1: vertical pass first (Pillow 13's rule, decided in JS)
 *   [7] hk: horizontal taps per output column (0: width unchanged, no horizontal pass)
 *   [8] vk: vertical taps per output row (0: height unchanged, no vertical pass)
 *   then, when hk > 0: per box column (left..left+width) xmin, count (2 * width ints) and hk
 *   fixed-point weights (width * hk ints); then, when vk > 0, the same for the box rows.
 * Bounds are input coordinates. Without a horizontal pass, `left` is an input column (same for rows).
 *
 * JS: resizeRgb(input: Buffer, jpeg: boolean, maxPixels: number, plan: Int32Array)
 *   -> Promise<{data: Buffer, width, height} | undefined>: `undefined` when the JPEG is declined
 *   (as decodeRgb declines: not plain YCbCr/grey, corrupt or truncated, over maxPixels) or decodes
 *   to another size than the plan's; rejects with libjpeg's message on a hard JPEG error. A plan
 *   that does not fit its input throws a RangeError at once.
 */
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "jpeg_to_rgb.h"
#include "napi_results.h"
#include "pil_passes.h"
#include "pil_resample.h"

typedef struct {
  kiln_job job; /* first: the shared part (napi_results.h) */
  int jpeg;
  double max_pixels;
  int32_t *plan;
  /* out */
  uint8_t *pixels;
} resize_job;

/* Off the JS thread: decode (JPEG input) and resample. */
static void execute(napi_env env, void *data) {
  (void)env;
  resize_job *j = data;
  const int32_t *p = j->plan;
  uint8_t *decoded = NULL;
  const uint8_t *src = j->job.input;
  if (j->jpeg) {
    int w = 0, h = 0;
    const int rc = kiln_decode_rgb_pixels(j->job.input, j->job.input_len, j->max_pixels, &decoded, &w, &h, j->job.message, sizeof j->job.message);
    if (rc == KILN_FAILED) j->job.failed = 1;
    if (rc != KILN_OK || w != p[KILN_PLAN_IN_W] || h != p[KILN_PLAN_IN_H]) {
      j->job.declined = !j->job.failed;
      free(decoded);
      return;
    }
    src = decoded;
  }
  j->pixels = kiln_pil_resample(src, p);
  if (!j->pixels) {
    j->job.failed = 1;
    snprintf(j->job.message, sizeof j->job.message, "kiln_jpeg.resizeRgb: out of memory for a %dx%d image", p[KILN_PLAN_IN_W], p[KILN_PLAN_IN_H]);
  }
  free(decoded);
}

static napi_status result(napi_env env, kiln_job *job, napi_value *out) {
  resize_job *j = (resize_job *)job;
  return kiln_rgb_result(env, &j->pixels, j->plan[KILN_PLAN_OUT_W], j->plan[KILN_PLAN_OUT_H], out);
}

static void complete(napi_env env, napi_status status, void *data) {
  resize_job *j = data;
  kiln_settle_job(env, status, &j->job, "kiln_jpeg.resizeRgb", result);
  free(j->pixels);
  free(j->plan);
  free(j);
}

#define CHECK(call) \
  do { \
    if ((call) != napi_ok) { \
      napi_throw_error(env, NULL, "kiln_jpeg.resizeRgb: " #call " failed"); \
      return NULL; \
    } \
  } while (0)

napi_value kiln_resize_rgb(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool is_buffer = false, jpeg = false, is_typed = false;
  if (argc == 4) CHECK(napi_is_buffer(env, argv[0], &is_buffer));
  if (argc == 4) CHECK(napi_is_typedarray(env, argv[3], &is_typed));
  napi_typedarray_type type = napi_int8_array;
  size_t plan_len = 0;
  void *plan_data = NULL;
  if (is_typed) CHECK(napi_get_typedarray_info(env, argv[3], &type, &plan_len, &plan_data, NULL, NULL));
  if (!is_buffer || type != napi_int32_array) {
    napi_throw_type_error(env, NULL, "kiln_jpeg.resizeRgb(input: Buffer, jpeg: boolean, maxPixels: number, plan: Int32Array)");
    return NULL;
  }
  CHECK(napi_get_value_bool(env, argv[1], &jpeg));
  double max_pixels;
  CHECK(napi_get_value_double(env, argv[2], &max_pixels));
  void *in;
  size_t in_len;
  CHECK(napi_get_buffer_info(env, argv[0], &in, &in_len));
  /* Check the copy, not the caller's array: it may be shared with another thread and change. */
  resize_job *j = calloc(1, sizeof(resize_job));
  int32_t *plan = malloc((plan_len ? plan_len : 1) * sizeof(int32_t));
  if (!j || !plan) {
    free(j);
    free(plan);
    napi_throw_error(env, NULL, "kiln_jpeg.resizeRgb: out of memory");
    return NULL;
  }
  if (plan_len) memcpy(plan, plan_data, plan_len * sizeof(int32_t));
  if (!kiln_pil_plan_ok(plan, plan_len) ||
      (!jpeg && in_len != (size_t)plan[KILN_PLAN_IN_W] * plan[KILN_PLAN_IN_H] * 3)) {
    free(j);
    free(plan);
    napi_throw_range_error(env, NULL, "kiln_jpeg.resizeRgb: the plan does not fit its input (see pil_resample.c)");
    return NULL;
  }
  j->plan = plan;
  j->jpeg = jpeg;
  j->max_pixels = max_pixels;
  napi_value promise = kiln_queue_job(env, &j->job, argv[0], "kiln_jpeg.resizeRgb", execute, complete);
  if (!promise) {
    free(j->plan);
    free(j);
  }
  return promise;
}
