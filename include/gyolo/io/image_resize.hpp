// cv2.resize for 8-bit images, bit for bit as OpenCV 4.6 (Debian build: no IPP, CPU path):
//   resize_linear  INTER_LINEAR: hal::resize's generic fixed-point path (INTER_RESIZE_COEF_BITS 11,
//                  coefficients saturate_cast<short>(w * 2048) with w computed in float, horizontal
//                  pass into int rows, vertical VResizeLinear<uchar,int,short,FixedPtCast<..,22>>
//                  rounding (((b0*(S0>>4))>>16) + ((b1*(S1>>4))>>16) + 2) >> 2); an exact 2x
//                  downscale in both axes is redirected to the INTER_AREA fast path as OpenCV does.
//   resize_area    INTER_AREA: integer scales use resizeAreaFast ((s+2)>>2 for 2x, otherwise
//                  cvRound(sum * (1.f/area))); fractional shrinks use the float ResizeArea_Invoker
//                  with computeResizeAreaTab; enlarging falls back to linear with area-mode weights.
// Same size returns a copy (cv::resize does src.copyTo(dst)).
// All floating-point expressions are evaluated exactly as OpenCV's SSE2 baseline build does: no
// fused multiply-add contraction (see GYOLO_NO_FP_CONTRACT).
#pragma once
// Compiled once in gyolo's library (src/image_resize.cpp).
#include "gyolo/io/image_types.hpp"

namespace gyolo {

/// cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR) for 8-bit images, bit-exact.
image_u8 resize_linear(const image_u8& src, int new_w, int new_h);

/// cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_AREA) for 8-bit images, bit-exact.
image_u8 resize_area(const image_u8& src, int new_w, int new_h);

}  // namespace gyolo
