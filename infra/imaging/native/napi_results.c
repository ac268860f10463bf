/* Settling the addon's promises (see napi_results.h). */
#include <stdlib.h>
#include "napi_results.h"

void kiln_reject(napi_env env, napi_deferred deferred, const char *message) {
  napi_value msg, e;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &e);
  napi_reject_deferred(env, deferred, e);
}

static void free_pixels(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  free(data);
}

napi_status kiln_rgb_result(napi_env env, uint8_t **pixels, int width, int height, napi_value *out) {
  const size_t len = (size_t)width * height * 3;
  napi_value data, w, h;
  napi_status s = napi_create_external_buffer(env, len, *pixels, free_pixels, NULL, &data);
  if (s == napi_ok) {
    *pixels = NULL; /* the Buffer owns them now */
  } else {
    void *copy;
    if ((s = napi_create_buffer_copy(env, len, *pixels, &copy, &data)) != napi_ok) return s;
  }
  if ((s = napi_create_object(env, out)) != napi_ok) return s;
  if ((s = napi_create_int32(env, width, &w)) != napi_ok) return s;
  if ((s = napi_create_int32(env, height, &h)) != napi_ok) return s;
  if ((s = napi_set_named_property(env, *out, "data", data)) != napi_ok) return s;
  if ((s = napi_set_named_property(env, *out, "width", w)) != napi_ok) return s;
  return napi_set_named_property(env, *out, "height", h);
}
