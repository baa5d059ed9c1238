// AVX2 + FMA kernels: 6 x 16 micro-tile (12 ymm accumulators). Compiled with -mavx2 -mfma (CMake).
#define GYOLO_VW 8
#define GYOLO_NV 2
#define GYOLO_ISA_ID ::gyolo::cpu_isa::avx2
#define GYOLO_ISA_NAME "avx2"
#define GYOLO_ISA_FN isa_avx2_kernels
#include "gemm_impl.inc"
