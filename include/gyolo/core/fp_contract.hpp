// Keeping a function's products out of fused multiply-adds when the file is compiled with
// -ffp-contract=fast (the kernels) or the compiler's default: exact formulas (OpenCV's resize,
// bilinear taps written with explicit fmaf). Put GYOLO_NO_FP_CONTRACT_ATTR before the function and
// GYOLO_NO_FP_CONTRACT_BODY first in its body (gcc takes a function attribute, clang a pragma).
#pragma once

#if defined(__clang__)
#define GYOLO_NO_FP_CONTRACT_ATTR
#define GYOLO_NO_FP_CONTRACT_BODY _Pragma("clang fp contract(off)")
#elif defined(__GNUC__)
#define GYOLO_NO_FP_CONTRACT_ATTR __attribute__((optimize("fp-contract=off")))
#define GYOLO_NO_FP_CONTRACT_BODY
#else
#define GYOLO_NO_FP_CONTRACT_ATTR
#define GYOLO_NO_FP_CONTRACT_BODY
#endif
