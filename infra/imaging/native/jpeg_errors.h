/* libjpeg error handling shared by the addon's entry points: errors longjmp back to the caller's
 * setjmp(e->jump) with libjpeg's message in e->message; warnings (corrupt or truncated data) are
 * counted in e->warnings; nothing is printed. */
#ifndef KILN_JPEG_ERRORS_H
#define KILN_JPEG_ERRORS_H
#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <jpeglib.h>

typedef struct {
  struct jpeg_error_mgr pub;
  jmp_buf jump;
  int warnings;
  char message[JMSG_LENGTH_MAX];
  struct jpeg_progress_mgr progress; /* kiln_limit_scans */
  int refused;                       /* set when kiln_limit_scans stopped the decode */
} kiln_err;

/* A progressive JPEG may carry any number of scans, each a full pass over the coefficients: a few
 * KB of scans can cost minutes of CPU (a decompression bomb). Past this many the decode fails,
 * as TurboJPEG's TJFLAG_LIMITSCANS does (same limit). */
#define KILN_MAX_SCANS 500

/* libjpeg's standard error manager with Kiln's handlers, for cinfo.err. */
struct jpeg_error_mgr *kiln_error_mgr(kiln_err *e);

/* After jpeg_create_decompress(d) with d->err from kiln_error_mgr(e): fail the decode (longjmp to
 * e->jump, message set) once a progressive JPEG passes KILN_MAX_SCANS scans. */
void kiln_limit_scans(j_decompress_ptr d, kiln_err *e);

#endif
