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
#include "decode_rgb.h"
#include "napi_results.h"
#include "pil_resample.h"

enum { IN_W, IN_H, LEFT, TOP, OUT_W, OUT_H, VFIRST, HK, VK, HEADER };

#define PRECISION_BITS (32 - 8 - 2)
#define HALF (1 << (PRECISION_BITS - 1))

typedef struct {
  kiln_job job; /* first: the shared part (napi_results.h) */
  const uint8_t *in;
  size_t in_len;
  int jpeg;
  double max_pixels;
  int32_t *plan;
  /* out */
  uint8_t *pixels;
} resize_job;

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* Pillow's clip8 (its lookup table is indexed by the arithmetic-shifted sum). */
static inline uint8_t clip8(int32_t v) {
  const int32_t x = v >> PRECISION_BITS;
  return x < 0 ? 0 : x > 255 ? 255 : (uint8_t)x;
}

/* Horizontal pass: `rows` rows of src (stride apart; column 0 of src is input column in_x0) to
 * out_w columns (out rows out_w * 3 bytes apart). */
static void horizontal(const uint8_t *src, size_t stride, int rows, int in_x0, const int32_t *bounds, const int32_t *k,
                       int ksize, int out_w, uint8_t *out) {
  for (int y = 0; y < rows; y++) {
    const uint8_t *row = src + (size_t)y * stride;
    uint8_t *o = out + (size_t)y * out_w * 3;
    for (int xx = 0; xx < out_w; xx++, o += 3) {
      const uint8_t *p = row + (size_t)(bounds[2 * xx] - in_x0) * 3;
      const int n = bounds[2 * xx + 1];
      const int32_t *kk = k + (size_t)xx * ksize;
      int32_t s0 = HALF, s1 = HALF, s2 = HALF;
      for (int x = 0; x < n; x++, p += 3) {
        s0 += p[0] * kk[x];
        s1 += p[1] * kk[x];
        s2 += p[2] * kk[x];
      }
      o[0] = clip8(s0);
      o[1] = clip8(s1);
      o[2] = clip8(s2);
    }
  }
}

/* Vertical pass: out_h rows of row_bytes from src (stride apart; row 0 of src is input row in_y0),
 * written contiguously to out; acc holds row_bytes sums. */
VECTOR_CLONES
static void vertical(const uint8_t *src, size_t stride, size_t row_bytes, int in_y0, const int32_t *bounds, const int32_t *k,
                     int ksize, int out_h, uint8_t *out, int32_t *restrict acc) {
  for (int yy = 0; yy < out_h; yy++) {
    const int ymin = bounds[2 * yy] - in_y0, n = bounds[2 * yy + 1];
    const int32_t *kk = k + (size_t)yy * ksize;
    for (size_t i = 0; i < row_bytes; i++) acc[i] = HALF;
    for (int y = 0; y < n; y++) {
      const uint8_t *restrict row = src + (size_t)(ymin + y) * stride;
      const int32_t kv = kk[y];
      for (size_t i = 0; i < row_bytes; i++) acc[i] += row[i] * kv;
    }
    uint8_t *restrict o = out + (size_t)yy * row_bytes;
    for (size_t i = 0; i < row_bytes; i++) o[i] = clip8(acc[i]);
  }
}

/* The input index range [*first, *last) that `count` outputs read. */
static void span(const int32_t *bounds, int count, int *first, int *last) {
  *first = bounds[0];
  *last = 0;
  for (int i = 0; i < count; i++) {
    if (bounds[2 * i] < *first) *first = bounds[2 * i];
    if (bounds[2 * i] + bounds[2 * i + 1] > *last) *last = bounds[2 * i] + bounds[2 * i + 1];
  }
}

/* pilResize(img, .., box) on src (plan[IN_W] x plan[IN_H] RGB): the box's pixels (malloc'd), NULL when out of memory. */
static uint8_t *resample(const uint8_t *src, const int32_t *p) {
  const int in_w = p[IN_W], left = p[LEFT], top = p[TOP], ow = p[OUT_W], oh = p[OUT_H], hk = p[HK], vk = p[VK];
  const int32_t *hb = p + HEADER, *hw = hb + 2 * ow;
  const int32_t *vb = hk ? hw + (size_t)ow * hk : hb, *vw = vb + 2 * oh;
  const size_t stride = (size_t)in_w * 3, out_row = (size_t)ow * 3;
  uint8_t *out = malloc(out_row * oh), *tmp = NULL;
  int32_t *acc = NULL;
  if (!out) return NULL;
  if (!hk && !vk) {
    for (int y = 0; y < oh; y++) memcpy(out + y * out_row, src + (size_t)(top + y) * stride + (size_t)left * 3, out_row);
  } else if (!vk) {
    horizontal(src + (size_t)top * stride, stride, oh, 0, hb, hw, hk, ow, out);
  } else if (!hk) {
    if (!(acc = malloc(sizeof(int32_t) * out_row))) goto oom;
    vertical(src + (size_t)left * 3, stride, out_row, 0, vb, vw, vk, oh, out, acc);
  } else if (!p[VFIRST]) {
    /* Horizontal first over the input rows the vertical pass reads. */
    int y0, y1;
    span(vb, oh, &y0, &y1);
    if (!(tmp = malloc(out_row * (y1 - y0))) || !(acc = malloc(sizeof(int32_t) * out_row))) goto oom;
    horizontal(src + (size_t)y0 * stride, stride, y1 - y0, 0, hb, hw, hk, ow, tmp);
    vertical(tmp, out_row, out_row, y0, vb, vw, vk, oh, out, acc);
  } else {
    /* Vertical first over the input columns the horizontal pass reads. */
    int x0, x1;
    span(hb, ow, &x0, &x1);
    const size_t tmp_row = (size_t)(x1 - x0) * 3;
    if (!(tmp = malloc(tmp_row * oh)) || !(acc = malloc(sizeof(int32_t) * tmp_row))) goto oom;
    vertical(src + (size_t)x0 * 3, stride, tmp_row, 0, vb, vw, vk, oh, tmp, acc);
    horizontal(tmp, tmp_row, oh, x0, hb, hw, hk, ow, out);
  }
  free(tmp);
  free(acc);
  return out;
oom:
  free(out);
  free(tmp);
  free(acc);
  return NULL;
}

/* Off the JS thread: decode (JPEG input) and resample. */
static void execute(napi_env env, void *data) {
  (void)env;
  resize_job *j = data;
  const int32_t *p = j->plan;
  uint8_t *decoded = NULL;
  const uint8_t *src = j->in;
  if (j->jpeg) {
    int w = 0, h = 0;
    const int rc = kiln_decode_rgb_pixels(j->in, j->in_len, j->max_pixels, &decoded, &w, &h, j->job.message, sizeof j->job.message);
    if (rc == KILN_RGB_FAILED) j->job.failed = 1;
    if (rc != KILN_RGB_OK || w != p[IN_W] || h != p[IN_H]) {
      j->job.declined = !j->job.failed;
      free(decoded);
      return;
    }
    src = decoded;
  }
  j->pixels = resample(src, p);
  if (!j->pixels) {
    j->job.failed = 1;
    snprintf(j->job.message, sizeof j->job.message, "kiln_jpeg.resizeRgb: out of memory for a %dx%d image", p[IN_W], p[IN_H]);
  }
  free(decoded);
}

static napi_status result(napi_env env, kiln_job *job, napi_value *out) {
  resize_job *j = (resize_job *)job;
  return kiln_rgb_result(env, &j->pixels, j->plan[OUT_W], j->plan[OUT_H], out);
}

static void complete(napi_env env, napi_status status, void *data) {
  resize_job *j = data;
  kiln_settle_job(env, status, &j->job, "kiln_jpeg.resizeRgb", result);
  free(j->pixels);
  free(j->plan);
  free(j);
}

/* One axis' coefficients: `count` (xmin, n) pairs inside 0..in with n <= k. */
static int axis_ok(const int32_t *bounds, int count, int k, int in) {
  for (int i = 0; i < count; i++) {
    const int32_t lo = bounds[2 * i], n = bounds[2 * i + 1];
    if (lo < 0 || n < 0 || n > k || lo > in - n) return 0;
  }
  return 1;
}

/* Whether plan (len ints) is well formed for its own input size. */
static int plan_ok(const int32_t *p, size_t len) {
  if (len < HEADER) return 0;
  const int64_t in_w = p[IN_W], in_h = p[IN_H], ow = p[OUT_W], oh = p[OUT_H], hk = p[HK], vk = p[VK];
  if (in_w < 1 || in_h < 1 || in_w > 65535 || in_h > 65535 || ow < 1 || oh < 1 || ow > 65535 || oh > 65535 ||
      hk < 0 || vk < 0 || hk > 65535 || vk > 65535 || p[LEFT] < 0 || p[TOP] < 0) return 0;
  if ((size_t)(HEADER + (hk ? ow * (2 + hk) : 0) + (vk ? oh * (2 + vk) : 0)) != len) return 0;
  if (!hk && p[LEFT] + ow > in_w) return 0;
  if (!vk && p[TOP] + oh > in_h) return 0;
  const int32_t *hb = p + HEADER, *vb = hk ? hb + ow * (2 + hk) : hb;
  return (!hk || axis_ok(hb, (int)ow, (int)hk, (int)in_w)) && (!vk || axis_ok(vb, (int)oh, (int)vk, (int)in_h));
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
  if (!plan_ok(plan_data, plan_len) ||
      (!jpeg && in_len != (size_t)((const int32_t *)plan_data)[IN_W] * ((const int32_t *)plan_data)[IN_H] * 3)) {
    napi_throw_range_error(env, NULL, "kiln_jpeg.resizeRgb: the plan does not fit its input (see pil_resample.c)");
    return NULL;
  }
  resize_job *j = calloc(1, sizeof(resize_job));
  int32_t *plan = malloc(plan_len * sizeof(int32_t));
  if (!j || !plan) {
    free(j);
    free(plan);
    napi_throw_error(env, NULL, "kiln_jpeg.resizeRgb: out of memory");
    return NULL;
  }
  memcpy(plan, plan_data, plan_len * sizeof(int32_t)); /* the caller may reuse its array */
  j->plan = plan;
  j->in = in;
  j->in_len = in_len;
  j->jpeg = jpeg;
  j->max_pixels = max_pixels;
  napi_value promise = kiln_queue_job(env, &j->job, argv[0], "kiln_jpeg.resizeRgb", execute, complete);
  if (!promise) {
    free(j->plan);
    free(j);
  }
  return promise;
}
