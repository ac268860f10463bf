/*
 * decode_rgb: the filter stage's (and eval's) decode for plain JPEGs, encoded bytes -> 8-bit RGB
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
 * JS: decodeRgb(input: Buffer, maxPixels) -> Promise<{data: Buffer, width, height} | undefined>
 * (data: width * height * 3 bytes, RGB interleaved, rows top to bottom).
 */
#include <node_api.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include "jpeg_errors.h"
#include "decode_rgb.h"
#include "napi_results.h"

typedef struct {
  kiln_job job; /* first: the shared part (napi_results.h) */
  /* in */
  const uint8_t *in;
  size_t in_len;
  double max_pixels;
  /* out */
  uint8_t *pixels;
  int width, height;
} decode_job;

/* The colour layouts decoded here the way PIL decodes them. */
static int plain(j_decompress_ptr d) {
  return d->data_precision == 8 &&
         ((d->num_components == 3 && d->jpeg_color_space == JCS_YCbCr) ||
          (d->num_components == 1 && d->jpeg_color_space == JCS_GRAYSCALE));
}

/* Header checks -> full decode to RGB (declared in decode_rgb.h; pil_resample.c decodes with it too). */
int kiln_decode_rgb_pixels(const uint8_t *in, size_t in_len, double max_pixels, uint8_t **pixels, int *width, int *height,
                           char *message, size_t message_size) {
  struct jpeg_decompress_struct d;
  kiln_err err;
  uint8_t *volatile pix = NULL; /* volatile: set after setjmp and read after a longjmp back to it */
  volatile int live = 0;
  volatile int rc = KILN_RGB_DECLINED;

  d.err = kiln_error_mgr(&err);
  if (setjmp(err.jump)) {
    /* An error after warnings (e.g. "no image" after "premature end") is truncated data: sharp's call. */
    if (!err.warnings) {
      rc = KILN_RGB_FAILED;
      snprintf(message, message_size, "%s", err.message);
    }
    goto done;
  }
  jpeg_create_decompress(&d);
  live = 1;
  jpeg_mem_src(&d, in, (unsigned long)in_len);
  jpeg_read_header(&d, TRUE);
  if (!plain(&d) || err.warnings || (double)d.image_width * d.image_height > max_pixels) goto done;
  d.out_color_space = JCS_RGB; /* everything else stays at libjpeg's defaults, as in Pillow */
  jpeg_start_decompress(&d);
  const int w = d.output_width, h = d.output_height;
  const size_t stride = (size_t)w * 3;
  pix = malloc(stride * h);
  if (!pix) {
    rc = KILN_RGB_FAILED;
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
  rc = KILN_RGB_OK;

done:
  if (live) jpeg_destroy_decompress(&d);
  free(pix);
  return rc;
}

static void run_decode(decode_job *j) {
  const int rc = kiln_decode_rgb_pixels(j->in, j->in_len, j->max_pixels, &j->pixels, &j->width, &j->height, j->job.message, sizeof j->job.message);
  j->job.declined = rc == KILN_RGB_DECLINED;
  j->job.failed = rc == KILN_RGB_FAILED;
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
  void *in;
  size_t len;
  CHECK(napi_get_buffer_info(env, argv[0], &in, &len));
  j->in = in;
  j->in_len = len;
  j->max_pixels = max_pixels;
  napi_value promise = kiln_queue_job(env, &j->job, argv[0], "kiln_jpeg.decodeRgb", execute, complete);
  if (!promise) free(j);
  return promise;
}
