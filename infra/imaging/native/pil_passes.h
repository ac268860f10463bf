/* pil_passes: Pillow's 8-bit resize passes from a plan of coefficients (see pil_passes.c). Pure C. */
#ifndef KILN_PIL_PASSES_H
#define KILN_PIL_PASSES_H
#include <stddef.h>
#include <stdint.h>

/* The plan's header (Int32Array from infra/imaging/pil-resample.ts's resamplePlan; layout in pil_resample.c). */
enum { KILN_PLAN_IN_W, KILN_PLAN_IN_H, KILN_PLAN_LEFT, KILN_PLAN_TOP, KILN_PLAN_OUT_W, KILN_PLAN_OUT_H, KILN_PLAN_VFIRST,
       KILN_PLAN_HK, KILN_PLAN_VK, KILN_PLAN_HEADER };

/* Whether plan (len ints) is well formed for its own input size: every tap of every output inside
 * the input, the length exactly what the header says. Call before kiln_pil_resample. */
int kiln_pil_plan_ok(const int32_t *plan, size_t len);

/* The box's pixels (malloc'd, OUT_W * OUT_H * 3 bytes) of src (IN_W x IN_H RGB) resized by a plan
 * that kiln_pil_plan_ok accepted; NULL when out of memory. */
uint8_t *kiln_pil_resample(const uint8_t *src, const int32_t *plan);

#endif
