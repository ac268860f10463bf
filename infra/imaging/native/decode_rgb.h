/* decodeRgb: JPEG -> 8-bit RGB pixels as Pillow's Image.open(...).convert('RGB') (see decode_rgb.c). */
#ifndef KILN_DECODE_RGB_H
#define KILN_DECODE_RGB_H
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

/* JS: decodeRgb(input: Buffer, maxPixels: number) -> Promise<{data: Buffer, width, height} | undefined> */
napi_value kiln_decode_rgb(napi_env env, napi_callback_info info);

enum { KILN_RGB_OK = 0, KILN_RGB_DECLINED = 1, KILN_RGB_FAILED = -1 };

/* The decode behind kiln_decode_rgb, on the calling thread: KILN_RGB_OK with *pixels (malloc'd,
 * width * height * 3 bytes) set, KILN_RGB_DECLINED (sharp's job) or KILN_RGB_FAILED (message set). */
int kiln_decode_rgb_pixels(const uint8_t *in, size_t in_len, double max_pixels, uint8_t **pixels, int *width, int *height,
                           char *message, size_t message_size);

#endif
