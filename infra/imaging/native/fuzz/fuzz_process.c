/*
 * libFuzzer harness for process() (jpeg_resize.c): the last 12 bytes choose the geometry (target
 * size, canvas, offsets in both directions, quality), what comes before them is the JPEG (so a seed
 * JPEG with any 12 bytes appended still decodes: libjpeg stops at its EOI marker). Any crash, sanitizer
 * report or leak is a bug. Build and run: fuzz/fuzz.sh.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "../jpeg_resize.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 12) return 0;
  const uint8_t *g = data + size - 12;
  kiln_resize_params p;
  p.rw = 1 + ((g[0] | g[1] << 8) % 700);
  p.rh = 1 + ((g[2] | g[3] << 8) % 700);
  p.cw = 1 + ((g[4] | g[5] << 8) % 700);
  p.ch = 1 + ((g[6] | g[7] << 8) % 700);
  p.ox = (int8_t)g[8] * 4;
  p.oy = (int8_t)g[9] * 4;
  p.quality = 1 + g[10] % 100;
  p.max_pixels = g[11] & 1 ? 4e6 : 1e5;
  uint8_t *out = NULL;
  size_t out_len = 0;
  char message[264];
  if (kiln_jpeg_resize(data, size - 12, &p, &out, &out_len, message, sizeof message) == KILN_OK) {
    if (out_len < 4 || out[0] != 0xFF || out[1] != 0xD8) abort(); /* KILN_OK must carry a JPEG */
  }
  free(out);
  return 0;
}
