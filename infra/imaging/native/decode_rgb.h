/* decodeRgb: the N-API entry point over jpeg_to_rgb.c (see decode_rgb.c). */
#ifndef KILN_DECODE_RGB_H
#define KILN_DECODE_RGB_H
#include <node_api.h>

/* JS: decodeRgb(input: Buffer, maxPixels: number) -> Promise<{data: Buffer, width, height} | undefined> */
napi_value kiln_decode_rgb(napi_env env, napi_callback_info info);

#endif
