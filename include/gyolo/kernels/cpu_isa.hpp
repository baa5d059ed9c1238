// CPU instruction sets, chosen at run time. The convolution GEMM and its epilogue are compiled
// once per instruction set in gyolo's small compiled part (src/isa_*.cpp, each with its own
// flags); the one in use is picked by CPU-feature detection on first use, or forced with the
// GYOLO_ISA environment variable (portable, avx2, avx512, best) or set_cpu_isa(). Code that
// includes gyolo is compiled for the baseline of its target, never with -march=native by us.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gyolo/core/backend.hpp"
#include "gyolo/core/error.hpp"

namespace gyolo {

/// The CPU kernel sets gyolo can be built with. `portable` is plain C++ with GCC/Clang vector
/// extensions: SSE2 on x86-64, NEON on AArch64.
enum class cpu_isa { portable, avx2, avx512 };

/// A requested kernel set that this build or this CPU lacks, or a bad GYOLO_ISA value.
struct isa_error : error {
  using error::error;
};

/// What the running CPU offers (and the OS has enabled), as far as gyolo's kernels care.
struct cpu_features {
  std::string arch;  // "x86_64", "aarch64", ...
  bool sse2 = false, avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false, avx512_bf16 = false;
  bool neon = false;
  /// e.g. "x86_64 sse2 avx avx2 fma avx512f avx512bw avx512dq avx512vl avx512_bf16"
  std::string summary() const;
};

const cpu_features& detected_cpu_features();
const char* to_string(cpu_isa);
/// "portable", "avx2", "avx512" (case-sensitive); throws isa_error naming the valid values.
cpu_isa parse_cpu_isa(std::string_view name);
/// Compiled into this build and runnable on this CPU.
bool cpu_isa_available(cpu_isa);
std::vector<cpu_isa> available_cpu_isas();
cpu_isa best_cpu_isa();
/// The kernel set in use (GYOLO_ISA on first call, else the best available).
cpu_isa active_cpu_isa();
/// Switches the kernel set for the whole process (throws isa_error if unavailable). Weights
/// packed at load stay valid: every set shares one packed layout.
void set_cpu_isa(cpu_isa);

/// Uses kernel set `i` until the end of the scope, then the previous one (tests, benchmarks).
class scoped_cpu_isa {
 public:
  explicit scoped_cpu_isa(cpu_isa i) : prev_(active_cpu_isa()) { set_cpu_isa(i); }
  ~scoped_cpu_isa() { set_cpu_isa(prev_); }
  scoped_cpu_isa(const scoped_cpu_isa&) = delete;
  scoped_cpu_isa& operator=(const scoped_cpu_isa&) = delete;

 private:
  cpu_isa prev_;
};

namespace cpu_detail {

/// Work done on a finished GEMM tile, in this order: + bias[row], activation, + residual.
struct gemm_epilogue {
  const float* bias = nullptr;      // per row of C (output channel); null: none
  act activation = act::none;
  const float* residual = nullptr;  // laid out as C, row stride res_ld; null: none
  std::int64_t res_ld = 0;
};

/// One instruction set's kernels. Packed weights are panels of `gemm_mr` rows ([K][gemm_mr]).
struct isa_kernels {
  cpu_isa id;
  const char* name;   // "avx512", "avx2", "portable-sse2", "portable-neon", ...
  /// C[m, n] = packed W[m, K] * X[K, n] (X row k at x + k*ldx, C row r at c + r*ldc), then the
  /// epilogue (if any).
  void (*gemm)(const float* packed, int m, int K, const float* x, std::int64_t ldx, float* c, std::int64_t ldc, int n,
               const gemm_epilogue* epi);
  /// y[j*ld + i] for i < rows, j < cols: + bias[j], activation, + res[j*res_ld + i].
  void (*epilogue)(float* y, std::int64_t ld, int rows, int cols, const float* bias, act a, const float* res,
                   std::int64_t res_ld);
  /// A register-only multiply-add loop of `iters` iterations, `fma_flop_per_iter` FLOP each (the
  /// measured peak of this kernel set; the result only defeats dead-code elimination).
  float (*fma_loop)(long iters);
  int fma_flop_per_iter;
  // Post-processing rows, PyTorch's bilinear formula bit for bit (post/interp.hpp):
  /// dst[i] = fma(a[i], h0, b[i] * h1), i < n.
  void (*lerp)(const float* a, const float* b, float h0, float h1, std::int64_t n, float* dst);
  /// dst[c * W + x] = fma(s[i0[x]], w0[x], s[i1[x]] * w1[x]) with s = src + c * cstride; c < C, x < W.
  void (*hlerp)(const float* src, std::int64_t cstride, int C, int W, const int* i0, const int* i1, const float* w0,
                const float* w1, float* dst);
  /// Running arg-max over C rows of n floats (rows[c * n + x], channel c_first + c) into best/idx;
  /// `init`: the first row initialises. A later channel wins only where strictly greater.
  void (*argmax_rows)(const float* rows, int C, int n, int c_first, bool init, float* best, std::int16_t* idx);
  /// out[i] = fma(w[nw-1], d[(nw-1)*stride + i], ... fma(w[0], d[i], 0)), i < n (mask coefficients
  /// times prototypes, in this order).
  void (*fma_dot)(const float* w, int nw, const float* d, std::int64_t stride, int n, float* out);
  /// Depthwise k x k convolution (stride s, padding p) of one H x W plane into oh x ow, no bias.
  /// dst = sum over `planes` input planes (plane_stride floats apart, weights k*k apart) of the k x k
  /// convolution (stride s, padding p) of each: a depthwise conv (planes = 1) or one output channel
  /// of a grouped conv with one output per group (DWConv(c1, c2) with c1 = 2 c2).
  void (*depthwise_plane)(const float* src, int H, int W, const float* w, int k, int s, int p, float* dst, int oh, int ow,
                          int planes, std::int64_t plane_stride);
  /// C[i * ldc + j] += sum_{t < L} A[i * lda + t] * B[j * ldb + t] for i < m, j < n: both operands
  /// read along contiguous rows (a convolution's weight gradient dW += dY * X^T, no transposes).
  void (*gemm_nt)(const float* A, std::int64_t lda, int m, const float* B, std::int64_t ldb, int n, int L, float* C,
                  std::int64_t ldc);
  // BatchNorm (+ SiLU) over one channel plane of P floats, for the training passes (sums in
  // double, from float lanes over short blocks):
  /// s1 += sum (x - c), s2 += sum (x - c)^2 (either may be null).
  void (*bn_sums)(const float* x, std::int64_t P, float c, double* s1, double* s2);
  /// y = a(x * sc + sh), a = none or silu (y may equal x).
  void (*bn_act)(const float* x, float* y, std::int64_t P, float sc, float sh, act a);
  /// du = dy * a'(z * sc + sh) (a = none: du = dy); sdu += sum du, sdux += sum du * (z - mu).
  void (*bn_act_bwd)(const float* z, const float* dy, float* du, std::int64_t P, float sc, float sh, float mu, act a, double* sdu,
                     double* sdux);
  /// dz = (or +=, with accumulate) k1 * (du - m1 - (z - mu) * is * m2).
  void (*bn_dx)(const float* z, const float* du, float* dz, std::int64_t P, float mu, float is, float k1, float m1, float m2,
                bool accumulate);
};

constexpr int gemm_mr = 6;  // rows (output channels) per packed panel, shared by every ISA
constexpr int gemm_kc = 512;  // the GEMM's inner (K) chunk: with K <= gemm_kc the epilogue's residual may alias C

/// The kernels of one ISA if compiled in and runnable here, else null.
const isa_kernels* isa_table(cpu_isa);
/// The kernels in use (resolves GYOLO_ISA on first call; throws isa_error if it is bad).
const isa_kernels& active_kernels();

}  // namespace cpu_detail
}  // namespace gyolo
