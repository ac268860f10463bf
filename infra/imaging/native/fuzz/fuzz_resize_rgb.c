/*
 * libFuzzer harness for resizeRgb (pil_passes.c + jpeg_to_rgb.c): a plan built from the input, half
 * the time from raw ints (kiln_pil_plan_ok must refuse every plan that does not fit) and half the
 * time shaped to fit (the passes must stay inside their buffers); every eighth input also decodes
 * the tail as a JPEG and resizes it with a plan of its size. Build and run: fuzz/fuzz.sh.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "../jpeg_to_rgb.h"
#include "../pil_passes.h"

static int32_t take(const uint8_t **d, size_t *n) {
  int32_t v = 0;
  for (int i = 0; i < 4; i++) {
    v = (int32_t)((uint32_t)v << 8);
    if (*n) { v |= **d; (*d)++; (*n)--; }
  }
  return v;
}

/* Plan for an in_w x in_h input from the bytes at *d (shaped: every tap inside the input). */
static int32_t *shaped_plan(const uint8_t **d, size_t *n, int in_w, int in_h, size_t *len) {
  const int hk = (uint32_t)take(d, n) % 6, vk = (uint32_t)take(d, n) % 6;
  /* Without a pass on an axis the box is cut from the input, so it must fit in it. */
  const int ow = 1 + (uint32_t)take(d, n) % (hk ? 64 : in_w), oh = 1 + (uint32_t)take(d, n) % (vk ? 64 : in_h);
  *len = KILN_PLAN_HEADER + (hk ? (size_t)ow * (2 + hk) : 0) + (vk ? (size_t)oh * (2 + vk) : 0);
  int32_t *p = calloc(*len, sizeof(int32_t));
  if (!p) return NULL;
  p[KILN_PLAN_IN_W] = in_w; p[KILN_PLAN_IN_H] = in_h; p[KILN_PLAN_OUT_W] = ow; p[KILN_PLAN_OUT_H] = oh;
  p[KILN_PLAN_LEFT] = in_w > ow ? (uint32_t)take(d, n) % (in_w - ow + 1) : 0;
  p[KILN_PLAN_TOP] = in_h > oh ? (uint32_t)take(d, n) % (in_h - oh + 1) : 0;
  p[KILN_PLAN_VFIRST] = take(d, n) & 1;
  p[KILN_PLAN_HK] = hk; p[KILN_PLAN_VK] = vk;
  int32_t *q = p + KILN_PLAN_HEADER;
  const int axes[2][3] = {{hk, ow, in_w}, {vk, oh, in_h}};
  for (int a = 0; a < 2; a++) {
    const int k = axes[a][0], count = axes[a][1], in = axes[a][2];
    if (!k) continue;
    for (int i = 0; i < count; i++) {
      const int lo = (uint32_t)take(d, n) % in, room = in - lo < k ? in - lo : k;
      q[2 * i] = lo;
      q[2 * i + 1] = 1 + (uint32_t)take(d, n) % room;
    }
    q += 2 * count;
    for (int i = 0; i < count * k; i++) q[i] = take(d, n) % (1 << 20); /* |sum| stays under kiln_pil_plan_ok's overflow bound */
    q += (size_t)count * k;
  }
  return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  const uint8_t mode = data[0];
  const uint8_t *d = data + 1;
  size_t n = size - 1;
  int in_w = 1 + d[0] % 48, in_h = 1 + d[1] % 48;
  d += 2; n -= 2;
  uint8_t *decoded = NULL;
  if ((mode & 7) == 7) { /* the JPEG path: the rest is a JPEG, resized by a shaped plan of its size */
    char message[264];
    if (kiln_decode_rgb_pixels(d, n, 1e6, &decoded, &in_w, &in_h, message, sizeof message) != KILN_OK) return 0;
  }
  size_t len = 0;
  int32_t *plan;
  if (mode & 8 && !decoded) { /* raw ints: header and all, the checker decides */
    len = n / 4 < 4096 ? n / 4 : 4096;
    plan = malloc((len + 1) * sizeof(int32_t));
    if (!plan) return 0;
    for (size_t i = 0; i < len; i++) plan[i] = take(&d, &n);
    if (len >= KILN_PLAN_HEADER) {
      plan[KILN_PLAN_IN_W] = in_w; plan[KILN_PLAN_IN_H] = in_h;
    }
  } else {
    plan = shaped_plan(&d, &n, in_w, in_h, &len);
    if (!plan) { free(decoded); return 0; }
    if (!kiln_pil_plan_ok(plan, len)) abort(); /* a shaped plan always fits */
  }
  if (kiln_pil_plan_ok(plan, len)) {
    const size_t bytes = (size_t)in_w * in_h * 3;
    uint8_t *src = decoded;
    if (!src && (src = malloc(bytes))) for (size_t i = 0; i < bytes; i++) src[i] = (uint8_t)(i * 131 + (n & 0xff));
    uint8_t *out = src ? kiln_pil_resample(src, plan) : NULL;
    if (out) {
      volatile uint8_t sink = out[(size_t)plan[KILN_PLAN_OUT_W] * plan[KILN_PLAN_OUT_H] * 3 - 1];
      (void)sink;
    }
    free(out);
    if (src != decoded) free(src);
  }
  free(plan);
  free(decoded);
  return 0;
}
