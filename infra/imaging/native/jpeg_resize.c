/*
 * jpeg_resize: the crawler's fast path for the common case, plain YCbCr JPEG in -> resized JPEG out,
 * on libjpeg-turbo (the system library) in one native call on the libuv thread pool:
 *   decode to YCbCr planes (DCT-domain shrink by 1/2, 1/4 or 1/8 when the result stays >= the
 *   target, as libvips' shrink-on-load) -> separable resample of each plane with OpenCV's
 *   INTER_AREA weights (the filter img2dataset uses: area mean when shrinking, bilinear when
 *   enlarging) to (rw, rh) for luma, half that for chroma -> place on a (cw, ch) black canvas at
 *   (ox, oy) (positive: border padding, negative: centre crop) -> baseline JPEG, 4:2:0, no Huffman
 *   optimisation, from the planes (no colour conversion or chroma resampling anywhere).
 *
 * It declines (resolves `undefined`, the caller then uses sharp) whatever it does not handle the
 * way sharp would: not 8-bit 3-component YCbCr, an embedded ICC profile (sharp converts to sRGB),
 * any libjpeg warning (corrupt or truncated data: sharp decides what that means), or decoded +
 * output pixels over 64 MiB (sharp streams those). Hard errors reject with libjpeg's message.
 *
 * Pure C (no N-API): kiln_jpeg.c wraps it for JS as process(); fuzz/fuzz_process.c drives it directly.
 *
 * Memory safety (issue 13): every buffer is sized from what libjpeg reports for the decode it does
 * (each component's downsampled size after DCT scaling, whole iMCU rows; whole MCUs on output), and
 * every resampler tap is clamped inside its source plane (axis_init): an output whose source window
 * lies past the plane's edge, as the extra chroma sample of an odd placement does, repeats the edge.
 * The invariants are spelled out at axis_t; test/imaging/native-sanitized.test.ts and fuzz/ check them.
 */
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include "jpeg_errors.h"
#include "jpeg_resize.h"

/* One axis of a separable resample: for each output index the first source index, and `taps`
 * weights (fixed point, WBITS fraction bits, summing exactly to one; zero-padded to the largest
 * count on the axis, with the start moved left where needed so that they stay inside the row).
 * Invariants axis_init guarantees for any in >= 1, out >= 1, scale > 0:
 *   1 <= taps <= in, and 0 <= start[o] <= in - taps for every output o: reads stay in the source;
 *   every output's weights are >= 0 and sum to exactly 1 << WBITS. */
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
 * of the source area it covers (fractional at the edges); when enlarging, bilinear. `scale` is the
 * source extent over `out`: in / out, except for a chroma plane of an odd-sized image, whose last
 * sample covers only half a sample's worth of the image. The source window of each output is
 * clamped to [0, in - 1], and the weights of a window cut by the clamp are renormalised over what
 * it covers (the first root cause of issue 13: the chroma plane of an odd placement has one output
 * more than its scale maps, whose window started past the plane and whose weights were written
 * past their row). 0: out of memory. */
static int axis_init(axis_t *a, int in, int out, double scale) {
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
      lo = a0 >= in - 1 ? in - 1 : (int)a0;
      const int hi = a1 >= in - 1 ? in - 1 : (int)a1;
      n = hi - lo + 1; /* >= 1: lo <= hi, both in [0, in - 1] */
      double sum = 0;
      for (int i = lo; i <= hi; i++) {
        const double l = i > a0 ? i : a0, r = i + 1 < a1 ? i + 1 : a1;
        w[i - lo] = r > l ? (r - l) / scale : 0;
        sum += w[i - lo];
      }
      /* A window that reaches past the plane's end (the extra chroma sample of an odd placement, a
       * chroma sample of a 1-pixel-wide output) averages the samples it does cover; one wholly past
       * it repeats the edge sample. Inside the plane the sum is already 1. */
      if (sum > 0) for (int i = 0; i < n; i++) w[i] /= sum;
      else w[0] = 1;
    } else {
      const double centre = (o + 0.5) * scale - 0.5;
      n = 1;
      if (centre <= 0) { lo = 0; w[0] = 1; }                              /* left edge repeats */
      else if (centre >= in - 1) { lo = in - 1; w[0] = 1; }               /* right edge repeats */
      else {
        lo = (int)centre;
        const double f = centre - lo;
        w[0] = 1 - f; w[1] = f; n = 2;                                    /* lo + 1 <= in - 1 */
      }
    }
    a->start[o] = lo;
    count[o] = n;
    if (n > taps) taps = n;
  }
  /* taps <= in: every count is at most in (its window lies in [0, in - 1]). */
  a->w = calloc((size_t)out * taps, sizeof(int32_t));
  if (!a->w) {
    free(count);
    free(wf);
    return 0;
  }
  for (int o = 0; o < out; o++) {
    /* lo + count <= in, so shift = lo - s lies in [0, taps - count]: every write below is in w[0, taps). */
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

/* One output sample of the horizontal pass on a plane (T taps; a constant in the unrolled copies). */
static inline __attribute__((always_inline)) uint8_t hsample(const uint8_t *restrict p, const int32_t *restrict w, int T) {
  int32_t v = 1 << (WBITS - 1);
  for (int t = 0; t < T; t++) v += w[t] * p[t];
  v >>= WBITS;
  return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

#define HROW(T) \
  static void hrow##T(uint8_t *restrict dst, const uint8_t *restrict src, const axis_t *ax, int x0, int x1) { \
    for (int x = x0; x < x1; x++) dst[x] = hsample(src + ax->start[x], ax->w + (size_t)x * T, T); \
  }
HROW(2)
HROW(3)
HROW(4)

/* One output row of the horizontal pass: columns x0..x1 of the resized row into dst (at x0).
 * The usual tap counts (shrinking by up to 2x, or enlarging) run unrolled. */
static void horizontal(uint8_t *restrict dst, const uint8_t *restrict src, const axis_t *ax, int x0, int x1) {
  switch (ax->taps) {
    case 2: hrow2(dst, src, ax, x0, x1); return;
    case 3: hrow3(dst, src, ax, x0, x1); return;
    case 4: hrow4(dst, src, ax, x0, x1); return;
    default:
      for (int x = x0; x < x1; x++) dst[x] = hsample(src + ax->start[x], ax->w + (size_t)x * ax->taps, ax->taps);
  }
}

/* A single-channel 8-bit image: w x h samples, rows `stride` bytes apart. */
typedef struct {
  uint8_t *p;
  int w, h;
  size_t stride;
} plane_t;

/* Resample `src` (whose samples cover src_w x src_h of the image) to rw x rh samples (covering
 * out_w x out_h of the resized image: rw x rh itself, except for chroma placed on a half-sample
 * grid) and place it at (ox, oy) on `dst` (negative offsets crop): only the
 * resized rows and columns that land on dst are computed. Vertical pass first (whole rows at a
 * time: vectorisable), then the horizontal pass on the fewer output rows. 0: out of memory. */
static int resize_into(const plane_t *src, double src_w, double src_h, const plane_t *dst, int rw, int rh, double out_w, double out_h, int ox, int oy) {
  axis_t ax = {0}, ay = {0};
  uint8_t *mid = malloc((size_t)src->w);
  int32_t *acc = malloc(sizeof(int32_t) * src->w);
  int ok = mid && acc && axis_init(&ax, src->w, rw, src_w / out_w) && axis_init(&ay, src->h, rh, src_h / out_h);
  if (ok) {
    int y0 = oy < 0 ? -oy : 0, y1 = rh;
    if (oy + y1 > dst->h) y1 = dst->h - oy;
    int x0 = ox < 0 ? -ox : 0, x1 = rw;
    if (ox + x1 > dst->w) x1 = dst->w - ox;
    for (int y = y0; y < y1; y++) {
      vertical(acc, mid, src->p + (size_t)ay.start[y] * src->stride, src->stride, ay.w + (size_t)y * ay.taps, ay.taps, src->w);
      horizontal(dst->p + (size_t)(y + oy) * dst->stride + ox, mid, &ax, x0, x1);
    }
  }
  axis_free(&ax);
  axis_free(&ay);
  free(mid);
  free(acc);
  return ok;
}

/* Replicate a plane's last column and row into its padding (rows up to `rows`, columns up to the
 * stride), as libjpeg's own edge expansion does before the DCT. */
static void pad_edges(const plane_t *pl, int rows) {
  for (int y = 0; y < pl->h; y++) {
    uint8_t *row = pl->p + (size_t)y * pl->stride;
    memset(row + pl->w, row[pl->w - 1], pl->stride - pl->w);
  }
  for (int y = pl->h; y < rows; y++) memcpy(pl->p + (size_t)y * pl->stride, pl->p + (size_t)(pl->h - 1) * pl->stride, pl->stride);
}

static int has_icc(j_decompress_ptr d) {
  for (jpeg_saved_marker_ptr m = d->marker_list; m; m = m->next) {
    if (m->marker == JPEG_APP0 + 2 && m->data_length >= 12 && memcmp(m->data, "ICC_PROFILE", 12) == 0) return 1;
  }
  return 0;
}

/* Floor of x / 2 for negative x too. */
static inline int half_floor(int x) { return x >= 0 ? x / 2 : -((1 - x) / 2); }

/* One call's parameters and outcome (what run() reads and sets; out is libjpeg's mem_dest buffer). */
typedef struct {
  const kiln_resize_params *p;
  unsigned char *out;
  unsigned long out_len;
  int failed, declined;
  char *message;
  size_t message_size;
} resize_state;

int kiln_resize_params_ok(const kiln_resize_params *p) {
  return p->rw >= 1 && p->rh >= 1 && p->cw >= 1 && p->ch >= 1 && p->rw <= 65535 && p->rh <= 65535 && p->cw <= 65535 &&
         p->ch <= 65535 && p->ox >= -65535 && p->ox <= 65535 && p->oy >= -65535 && p->oy <= 65535 && p->quality >= 1 &&
         p->quality <= 100;
}

/* Decode -> resample -> canvas -> encode, all in YCbCr planes (libjpeg's raw data interface): no
 * colour conversion, no chroma upsampling on decode and no chroma downsampling on encode, and the
 * chroma planes are resampled at their own (usually half) resolution. Resampling is linear, so this
 * is the RGB-domain resize up to rounding. Runs off the JS thread. */
static void run(resize_state *st, const uint8_t *in, size_t in_len) {
  const kiln_resize_params *p = st->p;
  struct jpeg_decompress_struct d;
  struct jpeg_compress_struct c;
  kiln_err derr, cerr;
  /* volatile: set after setjmp and read after a longjmp back to it */
  uint8_t *volatile src_mem[3] = {NULL, NULL, NULL}, *volatile dst_mem[3] = {NULL, NULL, NULL};
  JSAMPROW *volatile rows_mem = NULL;
  volatile int d_live = 0, c_live = 0;

  d.err = kiln_error_mgr(&derr);
  if (setjmp(derr.jump)) {
    st->failed = 1;
    snprintf(st->message, st->message_size, "%s", derr.message);
    goto done;
  }
  jpeg_create_decompress(&d);
  d_live = 1;
  kiln_limit_scans(&d, &derr);
  jpeg_mem_src(&d, in, (unsigned long)in_len);
  jpeg_save_markers(&d, JPEG_APP0 + 2, 0xffff);
  jpeg_read_header(&d, TRUE);
  if (d.num_components != 3 || d.jpeg_color_space != JCS_YCbCr || d.data_precision != 8 || has_icc(&d) || derr.warnings ||
      (double)d.image_width * d.image_height > p->max_pixels) {
    st->declined = 1;
    goto done;
  }
  d.raw_data_out = TRUE;
  /* DCT-domain shrink while the decoded image still covers the resize target on both axes, and
   * never below 8 decoded pixels a side: the last, partial block of a row is padded by the encoder
   * (edge replication), and DCT scaling averages the padding in; with a few decoded pixels that
   * sample is most of the image (a 3-pixel-wide image at 1/8 came out weighted 5:1 to its last
   * column). With 8 or more, it is one edge sample, weighted by the extent it really covers below. */
  int denom = 1;
  const int min_w = p->rw > 8 ? p->rw : 8, min_h = p->rh > 8 ? p->rh : 8;
  while (denom < 8 && (int)((d.image_width + 2 * denom - 1) / (2 * denom)) >= min_w &&
         (int)((d.image_height + 2 * denom - 1) / (2 * denom)) >= min_h) denom *= 2;
  d.scale_num = 1;
  d.scale_denom = denom;
  /* Whole decoded image + canvas in memory: past this budget sharp's streaming pipeline is kinder. */
  jpeg_calc_output_dimensions(&d);
  if (((double)d.output_width * d.output_height + (double)p->cw * p->ch) * 3 > MAX_BUFFER_BYTES) {
    st->declined = 1;
    goto done;
  }
  jpeg_start_decompress(&d);
  /* Luma must carry the largest sampling factors (it does in every encoder's 4:4:4 / 4:2:2 / 4:2:0). */
  if (d.comp_info[0].h_samp_factor != d.max_h_samp_factor || d.comp_info[0].v_samp_factor != d.max_v_samp_factor) {
    st->declined = 1;
    goto done;
  }

  /* Source planes: each component at its decoded resolution, padded to whole iMCU rows. */
  plane_t src[3];
  double ext_w[3], ext_h[3]; /* the image's extent in each plane's samples (w/2 for the chroma of an odd width w) */
  int row_ptrs = 0;
  for (int ci = 0; ci < 3; ci++) {
    jpeg_component_info *k = &d.comp_info[ci]; /* freed by jpeg_finish_decompress: read everything here */
    /* The image's true extent at this scale (image_width / denom, not the rounded-up output_width):
     * the last decoded sample of an odd or partial block covers only part of a sample. */
    ext_w[ci] = (double)d.image_width / denom * k->h_samp_factor * k->DCT_scaled_size / (d.max_h_samp_factor * d.min_DCT_scaled_size);
    ext_h[ci] = (double)d.image_height / denom * k->v_samp_factor * k->DCT_scaled_size / (d.max_v_samp_factor * d.min_DCT_scaled_size);
    const int rows_per_imcu = k->v_samp_factor * k->DCT_scaled_size;
    src[ci] = (plane_t){NULL, (int)k->downsampled_width, (int)k->downsampled_height, (size_t)k->width_in_blocks * k->DCT_scaled_size};
    src_mem[ci] = src[ci].p = malloc(src[ci].stride * rows_per_imcu * d.total_iMCU_rows);
    if (!src[ci].p) {
      st->failed = 1;
      snprintf(st->message, st->message_size, "out of memory for %dx%d pixels", (int)d.output_width, (int)d.output_height);
      goto done;
    }
    row_ptrs += rows_per_imcu;
  }
  rows_mem = malloc(sizeof(JSAMPROW) * (row_ptrs > 48 ? row_ptrs : 48));
  if (!rows_mem) {
    st->failed = 1;
    snprintf(st->message, st->message_size, "out of memory");
    goto done;
  }
  for (JDIMENSION imcu = 0; d.output_scanline < d.output_height; imcu++) {
    JSAMPARRAY planes[3];
    JSAMPROW *r = rows_mem;
    for (int ci = 0; ci < 3; ci++) {
      const int n = d.comp_info[ci].v_samp_factor * d.comp_info[ci].DCT_scaled_size;
      planes[ci] = r;
      for (int y = 0; y < n; y++) *r++ = src[ci].p + ((size_t)imcu * n + y) * src[ci].stride;
    }
    jpeg_read_raw_data(&d, planes, d.max_v_samp_factor * d.min_DCT_scaled_size);
  }
  jpeg_finish_decompress(&d);
  if (derr.warnings) {
    st->declined = 1;
    goto done;
  }

  /* Output planes: Y at cw x ch, Cb and Cr at 4:2:0, each padded to whole 16x16 MCUs. Black
   * borders are Y 0, Cb = Cr = 128 (RGB 0,0,0). The chroma placement is the luma one halved
   * (rounded outwards when odd: at most half a chroma sample off at the image's edge). */
  const int cw = p->cw, ch = p->ch, mcu_rows = (ch + 15) / 16;
  const int cox = half_floor(p->ox), coy = half_floor(p->oy);
  const int crw = half_floor(p->ox + p->rw + 1) - cox, crh = half_floor(p->oy + p->rh + 1) - coy;
  plane_t dst[3];
  for (int ci = 0; ci < 3; ci++) {
    const int sub = ci == 0 ? 1 : 2;
    dst[ci] = (plane_t){NULL, (cw + sub - 1) / sub, (ch + sub - 1) / sub, (size_t)((cw + 15) / 16) * 16 / sub};
    const size_t bytes = dst[ci].stride * (size_t)mcu_rows * 16 / sub;
    dst_mem[ci] = dst[ci].p = malloc(bytes);
    if (!dst[ci].p) {
      st->failed = 1;
      snprintf(st->message, st->message_size, "out of memory for a %dx%d canvas", cw, ch);
      goto done;
    }
    memset(dst[ci].p, ci == 0 ? 0 : 128, bytes);
    const int ok = ci == 0 ? resize_into(&src[0], ext_w[0], ext_h[0], &dst[0], p->rw, p->rh, p->rw, p->rh, p->ox, p->oy)
                           : resize_into(&src[ci], ext_w[ci], ext_h[ci], &dst[ci], crw, crh, p->rw / 2.0, p->rh / 2.0, cox, coy);
    if (!ok) {
      st->failed = 1;
      snprintf(st->message, st->message_size, "out of memory resizing %dx%d", (int)d.output_width, (int)d.output_height);
      goto done;
    }
    pad_edges(&dst[ci], mcu_rows * 16 / sub);
  }

  c.err = kiln_error_mgr(&cerr);
  if (setjmp(cerr.jump)) {
    st->failed = 1;
    snprintf(st->message, st->message_size, "encode: %s", cerr.message);
    goto done;
  }
  jpeg_create_compress(&c);
  c_live = 1;
  jpeg_mem_dest(&c, &st->out, &st->out_len);
  c.image_width = cw;
  c.image_height = ch;
  c.input_components = 3;
  c.in_color_space = JCS_YCbCr;
  jpeg_set_defaults(&c); /* YCbCr, 4:2:0 */
  jpeg_set_quality(&c, p->quality, TRUE);
  c.optimize_coding = FALSE;
  c.raw_data_in = TRUE;
  jpeg_start_compress(&c, TRUE);
  for (int m = 0; m < mcu_rows; m++) {
    JSAMPARRAY planes[3];
    JSAMPROW *r = rows_mem;
    for (int ci = 0; ci < 3; ci++) {
      const int n = ci == 0 ? 16 : 8;
      planes[ci] = r;
      for (int y = 0; y < n; y++) *r++ = dst[ci].p + ((size_t)m * n + y) * dst[ci].stride;
    }
    jpeg_write_raw_data(&c, planes, 16);
  }
  jpeg_finish_compress(&c);

done:
  if (c_live) jpeg_destroy_compress(&c);
  if (d_live) jpeg_destroy_decompress(&d);
  for (int ci = 0; ci < 3; ci++) {
    free(src_mem[ci]);
    free(dst_mem[ci]);
  }
  free(rows_mem);
  if ((st->failed || st->declined) && st->out) {
    free(st->out);
    st->out = NULL;
  }
}

int kiln_jpeg_resize(const uint8_t *in, size_t in_len, const kiln_resize_params *p, uint8_t **out, size_t *out_len,
                     char *message, size_t message_size) {
  resize_state st = {p, NULL, 0, 0, 0, message, message_size};
  *out = NULL;
  *out_len = 0;
  if (!kiln_resize_params_ok(p)) {
    snprintf(message, message_size, "size, offset or quality out of range (sizes 1..65535, offsets -65535..65535, quality 1..100)");
    return KILN_FAILED;
  }
  run(&st, in, in_len); /* frees its output when it fails or declines */
  if (st.failed || st.declined) return st.failed ? KILN_FAILED : KILN_DECLINED;
  *out = st.out;
  *out_len = st.out_len;
  return KILN_OK;
}

