/* Settling the addon's promises, shared by its entry points (kiln_jpeg.c, decode_rgb.c, pil_resample.c). */
#ifndef KILN_NAPI_RESULTS_H
#define KILN_NAPI_RESULTS_H
#include <node_api.h>
#include <stdint.h>

/* Reject `deferred` with an Error whose message is `message`. */
void kiln_reject(napi_env env, napi_deferred deferred, const char *message);

/* {data, width, height} for width x height RGB pixels (malloc'd): the Buffer takes *pixels without a
 * copy where the runtime allows (then *pixels becomes NULL), else copies them (the caller frees). */
napi_status kiln_rgb_result(napi_env env, uint8_t **pixels, int width, int height, napi_value *out);

#endif
