/*
 * pil_passes: the integer passes behind resizeRgb (Pillow 13's 8-bit ImagingResampleHorizontal_8bpc /
 * ImagingResampleVertical_8bpc, restricted to an output box), and the check that a plan fits its
 * input. Pure C (no N-API): pil_resample.c wraps it for JS and fuzz/fuzz_resize_rgb.c drives it
 * directly. Plan layout and the rules behind it: pil_passes.h and pil_resample.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "pil_passes.h"

#define PRECISION_BITS (32 - 8 - 2)
#define HALF (1 << (PRECISION_BITS - 1))

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

/* pilResize(img, .., box) on src (plan[KILN_PLAN_IN_W] x plan[KILN_PLAN_IN_H] RGB): the box's pixels (malloc'd), NULL when out of memory. */
uint8_t *kiln_pil_resample(const uint8_t *src, const int32_t *p) {
  const int in_w = p[KILN_PLAN_IN_W], left = p[KILN_PLAN_LEFT], top = p[KILN_PLAN_TOP], ow = p[KILN_PLAN_OUT_W], oh = p[KILN_PLAN_OUT_H], hk = p[KILN_PLAN_HK], vk = p[KILN_PLAN_VK];
  const int32_t *hb = p + KILN_PLAN_HEADER, *hw = hb + 2 * ow;
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
  } else if (!p[KILN_PLAN_VFIRST]) {
    /* Horizontal first over the input rows the vertical pass reads. */
    int y0, y1;
    span(vb, oh, &y0, &y1);
    if (!(tmp = malloc(out_row * (y1 - y0) + 1)) || !(acc = malloc(sizeof(int32_t) * out_row))) goto oom;
    horizontal(src + (size_t)y0 * stride, stride, y1 - y0, 0, hb, hw, hk, ow, tmp);
    vertical(tmp, out_row, out_row, y0, vb, vw, vk, oh, out, acc);
  } else {
    /* Vertical first over the input columns the horizontal pass reads. */
    int x0, x1;
    span(hb, ow, &x0, &x1);
    const size_t tmp_row = (size_t)(x1 - x0) * 3;
    if (!(tmp = malloc(tmp_row * oh + 1)) || !(acc = malloc(sizeof(int32_t) * (tmp_row + 1)))) goto oom;
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

/* One axis' coefficients: `count` (xmin, n) pairs inside 0..in with n <= k, and weights small enough
 * that no int32 sum of a pass can overflow (Pillow's own coefficients sum to about 1 << 22 in absolute
 * value, far below the bound; a plan that breaks it is malformed, found by fuzz/fuzz_resize_rgb.c). */
static int axis_ok(const int32_t *bounds, const int32_t *weights, int count, int k, int in) {
  const int64_t limit = (INT32_MAX - HALF) / 255;
  for (int i = 0; i < count; i++) {
    const int32_t lo = bounds[2 * i], n = bounds[2 * i + 1];
    if (lo < 0 || n < 0 || n > k || lo > in - n) return 0;
    int64_t sum = 0;
    for (int t = 0; t < n; t++) sum += weights[(size_t)i * k + t] < 0 ? -(int64_t)weights[(size_t)i * k + t] : weights[(size_t)i * k + t];
    if (sum > limit) return 0;
  }
  return 1;
}

/* Whether plan (len ints) is well formed for its own input size. */
int kiln_pil_plan_ok(const int32_t *p, size_t len) {
  if (len < KILN_PLAN_HEADER) return 0;
  const int64_t in_w = p[KILN_PLAN_IN_W], in_h = p[KILN_PLAN_IN_H], ow = p[KILN_PLAN_OUT_W], oh = p[KILN_PLAN_OUT_H], hk = p[KILN_PLAN_HK], vk = p[KILN_PLAN_VK];
  if (in_w < 1 || in_h < 1 || in_w > 65535 || in_h > 65535 || ow < 1 || oh < 1 || ow > 65535 || oh > 65535 ||
      hk < 0 || vk < 0 || hk > 65535 || vk > 65535 || p[KILN_PLAN_LEFT] < 0 || p[KILN_PLAN_TOP] < 0) return 0;
  if ((size_t)(KILN_PLAN_HEADER + (hk ? ow * (2 + hk) : 0) + (vk ? oh * (2 + vk) : 0)) != len) return 0;
  if (!hk && p[KILN_PLAN_LEFT] + ow > in_w) return 0;
  if (!vk && p[KILN_PLAN_TOP] + oh > in_h) return 0;
  const int32_t *hb = p + KILN_PLAN_HEADER, *vb = hk ? hb + ow * (2 + hk) : hb;
  return (!hk || axis_ok(hb, hb + 2 * ow, (int)ow, (int)hk, (int)in_w)) && (!vk || axis_ok(vb, vb + 2 * oh, (int)oh, (int)vk, (int)in_h));
}

