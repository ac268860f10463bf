/*
 * libFuzzer harness for decodeRgb (jpeg_to_rgb.c): the input is the JPEG. Any crash, sanitizer
 * report or leak is a bug. Build and run: fuzz/fuzz.sh.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "../jpeg_to_rgb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *pixels = NULL;
  int w = 0, h = 0;
  char message[264];
  if (kiln_decode_rgb_pixels(data, size, 4e6, &pixels, &w, &h, message, sizeof message) == KILN_OK) {
    if (w < 1 || h < 1 || (double)w * h > 4e6) abort();
    volatile uint8_t sink = pixels[(size_t)w * h * 3 - 1]; /* the whole buffer is addressable */
    (void)sink;
  }
  free(pixels);
  return 0;
}
