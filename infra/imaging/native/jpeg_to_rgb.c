/*
 * jpeg_to_rgb: the filter stage's (and eval's) decode for plain JPEGs, encoded bytes -> 8-bit RGB
 * pixels exactly as Pillow's Image.open(...).convert('RGB') gives them (the reference decodes with
 * PIL: transformers' image processors, clean-fid), on libjpeg-turbo (the system library) on the
 * libuv thread pool. Pillow leaves libjpeg at its defaults (JDCT_ISLOW, fancy upsampling, no DCT
 * scaling) and asks for JCS_RGB; so does this, and libjpeg-turbo's output is the same byte for byte.
 * Greyscale is decoded straight to RGB (libjpeg replicates the level, as convert('RGB') does).
 *
 * Embedded ICC profiles are ignored, as PIL ignores them (sharp would convert to sRGB): this path
 * follows the reference. EXIF orientation is not applied (neither PIL's open nor sharp's raw decode
 * rotates).
 *
 * It declines (resolves `undefined`, the caller then uses sharp) whatever is not 8-bit 3-component
 * YCbCr or 1-component greyscale (CMYK, YCCK, Adobe RGB-transform files: PIL converts those its own
 * way), any libjpeg warning (corrupt or truncated data: sharp decides what that means, as before),
 * and images with more than maxPixels pixels in their header (declined before any decoding). Hard
 * errors reject with libjpeg's message, unless a warning came first (truncated data: declined).
 *
 * Pure C (no N-API): decode_rgb.c wraps it for JS, pil_resample.c decodes with it, and
 * fuzz/fuzz_decode_rgb.c drives it directly.
 */
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include "jpeg_errors.h"
#include "jpeg_to_rgb.h"

/* The colour layouts decoded here the way PIL decodes them. */
static int plain(j_decompress_ptr d) {
  return d->data_precision == 8 &&
         ((d->num_components == 3 && d->jpeg_color_space == JCS_YCbCr) ||
          (d->num_components == 1 && d->jpeg_color_space == JCS_GRAYSCALE));
}

/* Header checks -> full decode to RGB (declared in jpeg_to_rgb.h; pil_resample.c decodes with it too). */
int kiln_decode_rgb_pixels(const uint8_t *in, size_t in_len, double max_pixels, uint8_t **pixels, int *width, int *height,
                           char *message, size_t message_size) {
  struct jpeg_decompress_struct d;
  kiln_err err;
  uint8_t *volatile pix = NULL; /* volatile: set after setjmp and read after a longjmp back to it */
  volatile int live = 0;
  volatile int rc = KILN_DECLINED;

  d.err = kiln_error_mgr(&err);
  if (setjmp(err.jump)) {
    /* An error after warnings (e.g. "no image" after "premature end") is truncated data: sharp's call.
     * A refused decompression bomb is refused whatever came before. */
    if (!err.warnings || err.refused) {
      rc = KILN_FAILED;
      snprintf(message, message_size, "%s", err.message);
    }
    goto done;
  }
  jpeg_create_decompress(&d);
  live = 1;
  kiln_limit_scans(&d, &err);
  jpeg_mem_src(&d, in, (unsigned long)in_len);
  jpeg_read_header(&d, TRUE);
  if (!plain(&d) || err.warnings || (double)d.image_width * d.image_height > max_pixels) goto done;
  d.out_color_space = JCS_RGB; /* everything else stays at libjpeg's defaults, as in Pillow */
  jpeg_start_decompress(&d);
  const int w = d.output_width, h = d.output_height;
  const size_t stride = (size_t)w * 3;
  pix = malloc(stride * h);
  if (!pix) {
    rc = KILN_FAILED;
    snprintf(message, message_size, "out of memory for %dx%d pixels", w, h);
    goto done;
  }
  JSAMPROW rows[16];
  while (d.output_scanline < d.output_height) {
    int n = 0;
    while (n < 16 && d.output_scanline + n < d.output_height) {
      rows[n] = pix + (size_t)(d.output_scanline + n) * stride;
      n++;
    }
    jpeg_read_scanlines(&d, rows, n);
  }
  jpeg_finish_decompress(&d);
  if (err.warnings) goto done;
  *pixels = pix;
  pix = NULL;
  *width = w;
  *height = h;
  rc = KILN_OK;

done:
  if (live) jpeg_destroy_decompress(&d);
  free(pix);
  return rc;
}

