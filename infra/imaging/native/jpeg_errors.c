/* libjpeg error handling shared by the addon's entry points (see jpeg_errors.h). */
#include <stdio.h>
#include <string.h>
#include "jpeg_errors.h"

static void on_error_exit(j_common_ptr cinfo) {
  kiln_err *e = (kiln_err *)cinfo->err;
  (*cinfo->err->format_message)(cinfo, e->message);
  longjmp(e->jump, 1);
}

static void on_emit_message(j_common_ptr cinfo, int level) {
  if (level < 0) ((kiln_err *)cinfo->err)->warnings++;
}

static void on_output_message(j_common_ptr cinfo) { (void)cinfo; }

/* libjpeg's standard error manager with Kiln's handlers: errors longjmp to e->jump (the caller's
 * setjmp), warnings are counted, nothing is printed. */
struct jpeg_error_mgr *kiln_error_mgr(kiln_err *e) {
  struct jpeg_error_mgr *m = jpeg_std_error(&e->pub);
  m->error_exit = on_error_exit;
  m->emit_message = on_emit_message;
  m->output_message = on_output_message;
  e->warnings = 0;
  e->refused = 0;
  return m;
}

static void on_progress(j_common_ptr cinfo) {
  j_decompress_ptr d = (j_decompress_ptr)cinfo;
  if (cinfo->is_decompressor && d->progressive_mode && d->input_scan_number > KILN_MAX_SCANS) {
    kiln_err *e = (kiln_err *)cinfo->err;
    e->refused = 1;
    snprintf(e->message, sizeof e->message, "progressive JPEG with more than %d scans (a decompression bomb): refused", KILN_MAX_SCANS);
    longjmp(e->jump, 1);
  }
}

void kiln_limit_scans(j_decompress_ptr d, kiln_err *e) {
  memset(&e->progress, 0, sizeof e->progress);
  e->progress.progress_monitor = on_progress;
  d->progress = &e->progress;
}
