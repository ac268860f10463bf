/*
 * kiln_jpeg: the crawler's fast path for the common case, plain YCbCr JPEG in -> resized JPEG out,
 * on libjpeg-turbo (the system library) in one native call on the libuv thread pool:
 *   decode (DCT-domain shrink by 1/2, 1/4 or 1/8 when the result stays >= the target, as libvips'
 *   shrink-on-load) -> separable resample to (rw, rh) with OpenCV's INTER_AREA weights (the filter
 *   img2dataset uses: area mean when shrinking, bilinear when enlarging) -> place on a (cw, ch)
 *   black canvas at (ox, oy) (positive: border padding, negative: centre crop) -> baseline JPEG,
 *   4:2:0, no Huffman optimisation.
 *
 * It declines (resolves `undefined`, the caller then uses sharp) whatever it does not handle the
 * way sharp would: not 8-bit 3-component YCbCr, an embedded ICC profile (sharp converts to sRGB),
 * any libjpeg warning (corrupt or truncated data: sharp decides what that means), or decoded +
 * output pixels over 64 MiB (sharp streams those). Hard errors reject with libjpeg's message.
 *
 * JS: process(input: Buffer, rw, rh, cw, ch, ox, oy, quality, maxPixels) -> Promise<Buffer | undefined>
 * (maxPixels: images with more pixels in their header are declined before any decoding).
 */
#include <node_api.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include "jpeg_errors.h"

/* One axis of a separable resample: for each output index the first source index, and `taps`
 * weights (fixed point, WBITS fraction bits, summing exactly to one; zero-padded to the largest
 * count on the axis, with the start moved left where needed so that they stay inside the row). */
typedef struct {
  int taps;
  int *start;
  int32_t *w;
} axis_t;

#define WBITS 14
#define MAX_BUFFER_BYTES (64.0 * 1024 * 1024)

static void axis_free(axis_t *a) {
  free(a->start);
  free(a->w);
}

/* OpenCV's INTER_AREA, img2dataset's resize filter: when shrinking, each output pixel is the mean
 * of the source area it covers (fractional at the edges); when enlarging, bilinear. */
static int axis_init(axis_t *a, int in, int out) {
  const double scale = (double)in / out;
  const int cap = (int)scale + 3; /* source pixels one output can touch */
  a->start = malloc(sizeof(int) * out);
  int *count = malloc(sizeof(int) * out);
  double *wf = calloc((size_t)out * cap, sizeof(double));
  if (!a->start || !count || !wf) {
    free(count);
    free(wf);
    return 0;
  }
  int taps = 1;
  for (int o = 0; o < out; o++) {
    double *w = wf + (size_t)o * cap;
    int lo, n;
    if (scale > 1.0) {
      const double a0 = o * scale, a1 = (o + 1) * scale;
      lo = (int)a0;
      int hi = (int)a1;
      if (hi > in - 1) hi = in - 1;
      n = hi - lo + 1;
      for (int i = lo; i <= hi; i++) {
        const double l = i > a0 ? i : a0, r = i + 1 < a1 ? i + 1 : a1;
        w[i - lo] = r > l ? (r - l) / scale : 0;
      }
    } else {
      const double centre = (o + 0.5) * scale - 0.5;
      lo = (int)(centre < 0 ? centre - 1 : centre); /* floor */
      const double f = centre - lo;
      n = 1;
      if (lo < 0) { lo = 0; w[0] = 1; }                       /* left edge repeats */
      else if (lo + 1 > in - 1) w[0] = 1;                      /* right edge repeats */
      else { w[0] = 1 - f; w[1] = f; n = 2; }
    }
    a->start[o] = lo;
    count[o] = n;
    if (n > taps) taps = n;
  }
  a->w = calloc((size_t)out * taps, sizeof(int32_t));
  if (!a->w) {
    free(count);
    free(wf);
    return 0;
  }
  for (int o = 0; o < out; o++) {
    const int s = a->start[o] + taps > in ? in - taps : a->start[o];
    const int shift = a->start[o] - s;
    int32_t *w = a->w + (size_t)o * taps;
    int32_t acc = 0;
    int big = shift;
    for (int t = 0; t < count[o]; t++) {
      w[shift + t] = (int32_t)(wf[(size_t)o * cap + t] * (1 << WBITS) + 0.5);
      acc += w[shift + t];
      if (w[shift + t] > w[big]) big = shift + t;
    }
    w[big] += (1 << WBITS) - acc; /* exact unit sum: flat areas stay exactly flat */
    a->start[o] = s;
  }
  a->taps = taps;
  free(count);
  free(wf);
  return 1;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define VECTOR_CLONES
#endif

/* One output row of the vertical pass: n source rows (stride apart) weighted into dst (len bytes). */
VECTOR_CLONES
static void vertical(int32_t *restrict acc, uint8_t *restrict dst, const uint8_t *restrict src, size_t stride, const int32_t *w, int n, int len) {
  for (int k = 0; k < len; k++) acc[k] = 1 << (WBITS - 1);
  for (int t = 0; t < n; t++) {
    const int32_t wt = w[t];
    const uint8_t *row = src + (size_t)t * stride;
    for (int k = 0; k < len; k++) acc[k] += wt * row[k];
  }
  for (int k = 0; k < len; k++) {
    int32_t v = acc[k] >> WBITS;
    dst[k] = v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
  }
}

/* One output pixel of the horizontal pass (T taps; a constant in the unrolled copies below). */
static inline __attribute__((always_inline)) void hpixel(uint8_t *restrict d, const uint8_t *restrict p, const int32_t *restrict w, int T) {
  int32_t r = 1 << (WBITS - 1), g = r, b = r;
  for (int t = 0; t < T; t++, p += 3) {
    r += w[t] * p[0];
    g += w[t] * p[1];
    b += w[t] * p[2];
  }
  r >>= WBITS; g >>= WBITS; b >>= WBITS;
  d[0] = r < 0 ? 0 : r > 255 ? 255 : (uint8_t)r;
  d[1] = g < 0 ? 0 : g > 255 ? 255 : (uint8_t)g;
  d[2] = b < 0 ? 0 : b > 255 ? 255 : (uint8_t)b;
}

#define HROW(T) \
  static void hrow##T(uint8_t *restrict dst, const uint8_t *restrict src, const axis_t *ax, int x0, int x1) { \
    for (int x = x0; x < x1; x++) hpixel(dst + x * 3, src + (size_t)ax->start[x] * 3, ax->w + (size_t)x * T, T); \
  }
HROW(2)
HROW(3)
HROW(4)

/* One output row of the horizontal pass: RGB columns x0..x1 of the resized row into dst (at x0).
 * The usual tap counts (shrinking by up to 2x, or enlarging) run unrolled. */
static void horizontal(uint8_t *restrict dst, const uint8_t *restrict src, const axis_t *ax, int x0, int x1) {
  switch (ax->taps) {
    case 2: hrow2(dst, src, ax, x0, x1); return;
    case 3: hrow3(dst, src, ax, x0, x1); return;
    case 4: hrow4(dst, src, ax, x0, x1); return;
    default:
      for (int x = x0; x < x1; x++) hpixel(dst + x * 3, src + (size_t)ax->start[x] * 3, ax->w + (size_t)x * ax->taps, ax->taps);
  }
}

typedef struct {
  /* in */
  napi_ref input_ref;
  const uint8_t *in;
  size_t in_len;
  int rw, rh, cw, ch, ox, oy, quality;
  double max_pixels;
  /* out */
  int declined;
  int failed;
  char message[JMSG_LENGTH_MAX + 64];
  unsigned char *out;
  unsigned long out_len;
  napi_deferred deferred;
  napi_async_work work;
} job_t;

static int has_icc(j_decompress_ptr d) {
  for (jpeg_saved_marker_ptr m = d->marker_list; m; m = m->next) {
    if (m->marker == JPEG_APP0 + 2 && m->data_length >= 12 && memcmp(m->data, "ICC_PROFILE", 12) == 0) return 1;
  }
  return 0;
}

/* Decode -> resample -> canvas -> encode. Runs off the JS thread. */
static void run_job(job_t *j) {
  struct jpeg_decompress_struct d;
  struct jpeg_compress_struct c;
  kiln_err derr, cerr;
  /* volatile: set after setjmp and read after a longjmp back to it */
  uint8_t *volatile pix = NULL, *volatile mid = NULL, *volatile canvas = NULL;
  int32_t *volatile acc = NULL;
  axis_t ax = {0}, ay = {0};
  volatile int d_live = 0, c_live = 0;

  d.err = kiln_error_mgr(&derr);
  if (setjmp(derr.jump)) {
    j->failed = 1;
    snprintf(j->message, sizeof j->message, "%s", derr.message);
    goto done;
  }
  jpeg_create_decompress(&d);
  d_live = 1;
  jpeg_mem_src(&d, j->in, (unsigned long)j->in_len);
  jpeg_save_markers(&d, JPEG_APP0 + 2, 0xffff);
  jpeg_read_header(&d, TRUE);
  if (d.num_components != 3 || d.jpeg_color_space != JCS_YCbCr || d.data_precision != 8 || has_icc(&d) || derr.warnings ||
      (double)d.image_width * d.image_height > j->max_pixels) {
    j->declined = 1;
    goto done;
  }
  d.out_color_space = JCS_RGB;
  /* DCT-domain shrink while the decoded image still covers the resize target on both axes. */
  int denom = 1;
  while (denom < 8 && (int)((d.image_width + 2 * denom - 1) / (2 * denom)) >= j->rw &&
         (int)((d.image_height + 2 * denom - 1) / (2 * denom)) >= j->rh) denom *= 2;
  d.scale_num = 1;
  d.scale_denom = denom;
  /* Whole decoded image + canvas in memory: past this budget sharp's streaming pipeline is kinder. */
  jpeg_calc_output_dimensions(&d);
  if (((double)d.output_width * d.output_height + (double)j->cw * j->ch) * 3 > MAX_BUFFER_BYTES) {
    j->declined = 1;
    goto done;
  }
  jpeg_start_decompress(&d);
  int iw = d.output_width, ih = d.output_height;
  pix = malloc((size_t)iw * ih * 3);
  if (!pix) {
    j->failed = 1;
    snprintf(j->message, sizeof j->message, "out of memory for %dx%d pixels", iw, ih);
    goto done;
  }
  while (d.output_scanline < d.output_height) {
    JSAMPROW row = pix + (size_t)d.output_scanline * iw * 3;
    jpeg_read_scanlines(&d, &row, 1);
  }
  jpeg_finish_decompress(&d);
  if (derr.warnings) {
    j->declined = 1;
    goto done;
  }

  /* Resample: vertical pass first (ih -> rh rows, whole rows at a time: vectorisable), then the
   * horizontal pass (iw -> rw) on the fewer output rows, straight into the canvas. Only resized
   * rows and columns that land on the canvas are computed (centre crop). */
  const int rw = j->rw, rh = j->rh, cw = j->cw, ch = j->ch;
  canvas = calloc((size_t)cw * ch * 3, 1);
  mid = malloc((size_t)iw * 3);
  acc = malloc(sizeof(int32_t) * iw * 3);
  if (!canvas || !mid || !acc || !axis_init(&ax, iw, rw) || !axis_init(&ay, ih, rh)) {
    j->failed = 1;
    snprintf(j->message, sizeof j->message, "out of memory resizing %dx%d", iw, ih);
    goto done;
  }
  int y0 = j->oy < 0 ? -j->oy : 0, y1 = rh;
  if (j->oy + y1 > ch) y1 = ch - j->oy;
  int x0 = j->ox < 0 ? -j->ox : 0, x1 = rw;
  if (j->ox + x1 > cw) x1 = cw - j->ox;
  for (int y = y0; y < y1; y++) {
    vertical(acc, mid, pix + (size_t)ay.start[y] * iw * 3, (size_t)iw * 3, ay.w + (size_t)y * ay.taps, ay.taps, iw * 3);
    horizontal(canvas + ((size_t)(y + j->oy) * cw + j->ox) * 3, mid, &ax, x0, x1);
  }

  c.err = kiln_error_mgr(&cerr);
  if (setjmp(cerr.jump)) {
    j->failed = 1;
    snprintf(j->message, sizeof j->message, "encode: %s", cerr.message);
    goto done;
  }
  jpeg_create_compress(&c);
  c_live = 1;
  jpeg_mem_dest(&c, &j->out, &j->out_len);
  c.image_width = cw;
  c.image_height = ch;
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, j->quality, TRUE);
  c.optimize_coding = FALSE;
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = canvas + (size_t)c.next_scanline * cw * 3;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);

done:
  if (c_live) jpeg_destroy_compress(&c);
  if (d_live) jpeg_destroy_decompress(&d);
  axis_free(&ax);
  axis_free(&ay);
  free(pix);
  free(mid);
  free(canvas);
  free(acc);
  if ((j->failed || j->declined) && j->out) {
    free(j->out);
    j->out = NULL;
  }
}

static void execute(napi_env env, void *data) {
  (void)env;
  run_job((job_t *)data);
}

static void complete(napi_env env, napi_status status, void *data) {
  job_t *j = data;
  napi_value v;
  if (status != napi_ok) {
    napi_value msg;
    napi_create_string_utf8(env, "kiln_jpeg: job cancelled", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &v);
    napi_reject_deferred(env, j->deferred, v);
  } else if (j->failed) {
    napi_value msg;
    napi_create_string_utf8(env, j->message, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &v);
    napi_reject_deferred(env, j->deferred, v);
  } else if (j->declined) {
    napi_get_undefined(env, &v);
    napi_resolve_deferred(env, j->deferred, v);
  } else {
    void *copy;
    napi_create_buffer_copy(env, j->out_len, j->out, &copy, &v);
    napi_resolve_deferred(env, j->deferred, v);
  }
  free(j->out);
  napi_delete_reference(env, j->input_ref);
  napi_delete_async_work(env, j->work);
  free(j);
}

#define CHECK(call) \
  do { \
    if ((call) != napi_ok) { \
      napi_throw_error(env, NULL, "kiln_jpeg: " #call " failed"); \
      return NULL; \
    } \
  } while (0)

static napi_value js_process(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 9) {
    napi_throw_type_error(env, NULL, "kiln_jpeg.process(input, rw, rh, cw, ch, ox, oy, quality, maxPixels)");
    return NULL;
  }
  bool is_buffer = false;
  CHECK(napi_is_buffer(env, argv[0], &is_buffer));
  if (!is_buffer) {
    napi_throw_type_error(env, NULL, "kiln_jpeg.process: input must be a Buffer");
    return NULL;
  }
  int32_t n[7];
  for (int i = 0; i < 7; i++) CHECK(napi_get_value_int32(env, argv[i + 1], &n[i]));
  double max_pixels;
  CHECK(napi_get_value_double(env, argv[8], &max_pixels));
  if (n[0] < 1 || n[1] < 1 || n[2] < 1 || n[3] < 1 || n[0] > 65535 || n[1] > 65535 || n[2] > 65535 || n[3] > 65535 ||
      n[6] < 1 || n[6] > 100 || n[4] < -65535 || n[4] > 65535 || n[5] < -65535 || n[5] > 65535) {
    napi_throw_range_error(env, NULL, "kiln_jpeg.process: size, offset or quality out of range");
    return NULL;
  }
  job_t *j = calloc(1, sizeof(job_t));
  if (!j) {
    napi_throw_error(env, NULL, "kiln_jpeg: out of memory");
    return NULL;
  }
  void *in;
  size_t len;
  CHECK(napi_get_buffer_info(env, argv[0], &in, &len));
  j->in = in;
  j->in_len = len;
  j->rw = n[0]; j->rh = n[1]; j->cw = n[2]; j->ch = n[3]; j->ox = n[4]; j->oy = n[5]; j->quality = n[6];
  j->max_pixels = max_pixels;
  CHECK(napi_create_reference(env, argv[0], 1, &j->input_ref));
  napi_value promise, name;
  CHECK(napi_create_promise(env, &j->deferred, &promise));
  CHECK(napi_create_string_utf8(env, "kiln_jpeg", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_async_work(env, NULL, name, execute, complete, j, &j->work));
  CHECK(napi_queue_async_work(env, j->work));
  return promise;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn, version;
  if (napi_create_function(env, "process", NAPI_AUTO_LENGTH, js_process, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "process", fn);
  napi_create_int32(env, LIBJPEG_TURBO_VERSION_NUMBER, &version);
  napi_set_named_property(env, exports, "libjpegTurboVersion", version);
  return exports;
}

NAPI_MODULE(kiln_jpeg, init)
