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
} kiln_err;

/* libjpeg's standard error manager with Kiln's handlers, for cinfo.err. */
struct jpeg_error_mgr *kiln_error_mgr(kiln_err *e);

#endif
