/* jpeg_resize: plain YCbCr JPEG in -> resized, placed JPEG out (see jpeg_resize.c). Pure C. */
#ifndef KILN_JPEG_RESIZE_H
#define KILN_JPEG_RESIZE_H
#include <stddef.h>
#include <stdint.h>
#include "outcome.h"

/* Resize to rw x rh, place at (ox, oy) on a black cw x ch canvas (negative offsets crop), encode at
 * `quality`. Images with more than max_pixels pixels in their header are declined before decoding. */
typedef struct {
  int rw, rh, cw, ch, ox, oy, quality;
  double max_pixels;
} kiln_resize_params;

/* Whether the geometry is one this code takes: sizes 1..65535, offsets -65535..65535, quality 1..100. */
int kiln_resize_params_ok(const kiln_resize_params *p);

/* On the calling thread: KILN_OK with *out (malloc'd JPEG, *out_len bytes), KILN_DECLINED (sharp's
 * job: *out NULL) or KILN_FAILED (message set, *out NULL). */
int kiln_jpeg_resize(const uint8_t *in, size_t in_len, const kiln_resize_params *p, uint8_t **out, size_t *out_len,
                     char *message, size_t message_size);

#endif
