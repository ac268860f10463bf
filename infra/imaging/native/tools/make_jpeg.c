/*
 * make_jpeg: a test tool that encodes raw pixels as JPEG with the layouts web JPEGs come in, which
 * sharp cannot all make (4:2:2, 4:4:0, restart intervals): the sanitizer test's source images and
 * the fuzzers' seed corpus. Not part of the addon.
 *
 * Usage: make_jpeg WIDTH HEIGHT COMPONENTS(1|3) HSAMP VSAMP QUALITY PROGRESSIVE(0|1) RESTART_ROWS < pixels > out.jpg
 *   pixels: WIDTH * HEIGHT * COMPONENTS bytes (RGB or grey) on stdin; HSAMP x VSAMP: the luma
 *   sampling factors (1x1 = 4:4:4, 2x1 = 4:2:2, 2x2 = 4:2:0, 1x2 = 4:4:0; chroma stays 1x1);
 *   RESTART_ROWS: a restart marker every that many MCU rows (0: none).
 */
#include <stdio.h>
#include <stdlib.h>
#include <jpeglib.h>

int main(int argc, char **argv) {
  if (argc != 9) {
    fprintf(stderr, "usage: make_jpeg WIDTH HEIGHT COMPONENTS HSAMP VSAMP QUALITY PROGRESSIVE RESTART_ROWS < pixels > out.jpg\n");
    return 2;
  }
  const int w = atoi(argv[1]), h = atoi(argv[2]), comps = atoi(argv[3]), hs = atoi(argv[4]), vs = atoi(argv[5]);
  const int quality = atoi(argv[6]), progressive = atoi(argv[7]), restart = atoi(argv[8]);
  if (w < 1 || h < 1 || w > 65500 || h > 65500 || (comps != 1 && comps != 3) || hs < 1 || hs > 4 || vs < 1 || vs > 4 ||
      quality < 1 || quality > 100 || restart < 0) {
    fprintf(stderr, "make_jpeg: argument out of range\n");
    return 2;
  }
  const size_t row = (size_t)w * comps;
  unsigned char *px = malloc(row * h);
  if (!px || fread(px, 1, row * h, stdin) != row * h) {
    fprintf(stderr, "make_jpeg: expected %zu bytes of pixels on stdin\n", row * h);
    return 1;
  }
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr err;
  c.err = jpeg_std_error(&err); /* errors exit the process: a test tool */
  jpeg_create_compress(&c);
  jpeg_stdio_dest(&c, stdout);
  c.image_width = w;
  c.image_height = h;
  c.input_components = comps;
  c.in_color_space = comps == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  if (comps == 3) {
    c.comp_info[0].h_samp_factor = hs;
    c.comp_info[0].v_samp_factor = vs;
    c.comp_info[1].h_samp_factor = c.comp_info[1].v_samp_factor = 1;
    c.comp_info[2].h_samp_factor = c.comp_info[2].v_samp_factor = 1;
  }
  if (progressive) jpeg_simple_progression(&c);
  c.restart_in_rows = restart;
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW r = px + (size_t)c.next_scanline * row;
    jpeg_write_scanlines(&c, &r, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  free(px);
  return 0;
}
