/* JPEG -> 8-bit RGB pixels as Pillow's Image.open(...).convert('RGB') (see jpeg_to_rgb.c). Pure C. */
#ifndef KILN_JPEG_TO_RGB_H
#define KILN_JPEG_TO_RGB_H
#include <stddef.h>
#include <stdint.h>
#include "outcome.h"

/* Decode on the calling thread: KILN_OK with *pixels (malloc'd, width * height * 3 bytes) set,
 * KILN_DECLINED (sharp's job) or KILN_FAILED (message set). */
int kiln_decode_rgb_pixels(const uint8_t *in, size_t in_len, double max_pixels, uint8_t **pixels, int *width, int *height,
                           char *message, size_t message_size);

#endif
