/* resizeRgb: Pillow's 8-bit resize (of a JPEG it decodes first, or of raw RGB), see pil_resample.c. */
#ifndef KILN_PIL_RESAMPLE_H
#define KILN_PIL_RESAMPLE_H
#include <node_api.h>

/* JS: resizeRgb(input: Buffer, jpeg: boolean, maxPixels: number, plan: Int32Array)
 *   -> Promise<{data: Buffer, width, height} | undefined>
 * plan: the Int32Array infra/imaging/pil-resample.ts's resamplePlan() writes (layout in pil_resample.c). */
napi_value kiln_resize_rgb(napi_env env, napi_callback_info info);

#endif
