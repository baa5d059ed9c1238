// Portable kernels: 4-float vectors (SSE2 on x86-64, NEON on AArch64), compiled for the
// target's baseline. 6 x 8 micro-tile on x86-64 (12 of 16 xmm registers); 6 x 16 on AArch64
// (24 of 32 NEON registers).
#if defined(__aarch64__)
#define GYOLO_NV 4
#define GYOLO_ISA_NAME "portable-neon"
#elif defined(__x86_64__)
#define GYOLO_NV 2
#define GYOLO_ISA_NAME "portable-sse2"
#else
#define GYOLO_NV 2
#define GYOLO_ISA_NAME "portable"
#endif
#define GYOLO_VW 4
#define GYOLO_ISA_ID ::gyolo::cpu_isa::portable
#define GYOLO_ISA_FN isa_portable_kernels
#include "gemm_impl.inc"
