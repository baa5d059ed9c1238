// AVX-512 kernels: 6 x 64 micro-tile (24 zmm accumulators). Compiled with -mavx512f -mfma (CMake).
#define GYOLO_VW 16
#define GYOLO_NV 4
#define GYOLO_ISA_ID ::gyolo::cpu_isa::avx512
#define GYOLO_ISA_NAME "avx512"
#define GYOLO_ISA_FN isa_avx512_kernels
#include "gemm_impl.inc"
