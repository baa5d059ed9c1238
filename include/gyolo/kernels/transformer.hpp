// Token-major (row-major [tokens x channels]) transformer kernels for the caption head: linear,
// residual + LayerNorm, multi-head attention, gated sum, log-softmax. Same pattern as kernels<B>:
// tkernels<reference> is the naive oracle (double accumulation), tkernels<cpu> the Eigen/OpenMP
// implementation with identical signatures; tests check one against the other.
//
// Conventions (upstream models/grit.py, PyTorch semantics):
//  - linear: y = x W^T + b with W stored as torch.nn.Linear does, [out, in] row-major;
//  - attention: heads own consecutive channel blocks of d_k = cols / heads; scores are
//    (q . k) / sqrt(d_k), a true division by float(sqrt(d_k)) (upstream divides a float32 tensor by
//    np.sqrt(d_k)); masked keys get -inf; softmax over keys; heads are concatenated;
//  - add_layernorm: y = LayerNorm(x + r) (r optional), biased variance, eps inside the sqrt.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "gyolo/core/parallel.hpp"
#include "gyolo/kernels/cpu_gemm.hpp"
#include "gyolo/kernels/desc.hpp"

namespace gyolo {

/// Row-major matrix view: element (r, c) at data[r * ld + c].
template <class T>
struct mat_view {
  T* data = nullptr;
  int rows = 0, cols = 0;
  std::int64_t ld = 0;

  T* row(int r) const { return data + std::int64_t(r) * ld; }
  /// Rows [r0, r0 + n).
  mat_view middle_rows(int r0, int n) const { return {data + std::int64_t(r0) * ld, n, cols, ld}; }
  /// Columns [c0, c0 + n).
  mat_view middle_cols(int c0, int n) const { return {data + c0, rows, n, ld}; }
  operator mat_view<const T>() const { return {data, rows, cols, ld}; }
};
using mview = mat_view<float>;
using cmview = mat_view<const float>;

inline mview as_mat(float* p, int rows, int cols) { return {p, rows, cols, cols}; }
inline cmview as_cmat(const float* p, int rows, int cols) { return {p, rows, cols, cols}; }

/// torch.nn.Linear parameters: w [out, in] row-major, optional b [out], and optionally the
/// backend's packed copy wt = W^T [in, out] row-major (from tkernels<B>::prepack_linear). A backend
/// that packs may drop w (see tkernels<B>::packed_only).
struct linear_params {
  const float* w = nullptr;
  const float* b = nullptr;
  int out = 0, in = 0;
  const float* wt = nullptr;
};

/// Backend-specific packed copy of a linear layer's weights (empty where a backend packs none).
struct linear_pack {
  std::vector<float> wt;
};

/// The divisor of the attention scores: float32(sqrt(d_k)) (PyTorch converts the float64 scalar to
/// the tensor's float32 compute type, then divides).
inline float attention_divisor(int dk) { return float(std::sqrt(double(dk))); }

template <class B> struct tkernels;

template <>
struct tkernels<reference> {
  using ctx_t = context<reference>;
  static constexpr bool packed_only = false;

  /// No packing: the reference reads torch's [out, in] layout.
  static linear_pack prepack_linear(const std::vector<float>&, int, int) { return {}; }

  static void linear(ctx_t&, cmview x, const linear_params& p, mview y, act a = act::none) {
    GYOLO_CHECK(x.cols == p.in && y.cols == p.out && y.rows == x.rows, "linear: shape mismatch");
    for (int r = 0; r < x.rows; ++r)
      for (int o = 0; o < p.out; ++o) {
        double acc = p.b ? p.b[o] : 0.0;
        const float* w = p.w + std::int64_t(o) * p.in;
        for (int i = 0; i < p.in; ++i) acc += double(x.row(r)[i]) * w[i];
        y.row(r)[o] = apply_act(a, float(acc));
      }
  }

  /// y = LayerNorm(x + r) * gamma + beta; r may be empty (data == nullptr). y may alias x.
  static void add_layernorm(ctx_t&, cmview x, cmview r, const float* gamma, const float* beta, float eps, mview y) {
    const int d = x.cols;
    std::vector<float> t(std::size_t(d), 0.f);
    for (int i = 0; i < x.rows; ++i) {
      for (int c = 0; c < d; ++c) t[c] = r.data ? x.row(i)[c] + r.row(i)[c] : x.row(i)[c];
      double m = 0, v = 0;
      for (int c = 0; c < d; ++c) m += t[c];
      m /= d;
      for (int c = 0; c < d; ++c) v += (t[c] - m) * (t[c] - m);
      v /= d;
      const double rs = 1.0 / std::sqrt(v + double(eps));
      for (int c = 0; c < d; ++c) y.row(i)[c] = float((t[c] - m) * rs * gamma[c] + beta[c]);
    }
  }

  /// Multi-head scaled dot-product attention. q [nq, D], k/v [nk, D], y [nq, D]. key_masked (optional,
  /// nk bytes): non-zero keys are excluded. A query whose keys are all masked gets zeros.
  static void attention(ctx_t&, cmview q, cmview k, cmview v, int heads, mview y, const unsigned char* key_masked = nullptr) {
    const int D = q.cols, dk = D / heads, nk = k.rows;
    GYOLO_CHECK(D % heads == 0 && k.cols == D && v.cols == D && v.rows == nk && y.cols == D && y.rows == q.rows,
                "attention: shape mismatch");
    const double div = attention_divisor(dk);
    std::vector<double> s(static_cast<std::size_t>(nk));
    for (int i = 0; i < q.rows; ++i)
      for (int h = 0; h < heads; ++h) {
        double mx = -std::numeric_limits<double>::infinity();
        for (int j = 0; j < nk; ++j) {
          if (key_masked && key_masked[j]) { s[j] = -std::numeric_limits<double>::infinity(); continue; }
          double acc = 0;
          for (int c = 0; c < dk; ++c) acc += double(q.row(i)[h * dk + c]) * k.row(j)[h * dk + c];
          s[j] = acc / div;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int j = 0; j < nk; ++j) sum += (s[j] = std::isinf(s[j]) && s[j] < 0 ? 0.0 : std::exp(s[j] - mx));
        for (int c = 0; c < dk; ++c) {
          double o = 0;
          if (sum > 0)
            for (int j = 0; j < nk; ++j) o += s[j] / sum * v.row(j)[h * dk + c];
          y.row(i)[h * dk + c] = float(o);
        }
      }
  }

  /// y = (e1 * a1 + e2 * a2) / sqrt(2) elementwise (the parallel decoder's gated sum).
  static void gate_mix(ctx_t&, cmview e1, cmview a1, cmview e2, cmview a2, mview y) {
    const float s2 = float(std::sqrt(2.0));
    for (int i = 0; i < y.rows; ++i)
      for (int c = 0; c < y.cols; ++c)
        y.row(i)[c] = float((double(e1.row(i)[c]) * a1.row(i)[c] + double(e2.row(i)[c]) * a2.row(i)[c]) / s2);
  }

  /// Row-wise log_softmax. y may alias x.
  static void log_softmax(ctx_t&, cmview x, mview y) {
    for (int i = 0; i < x.rows; ++i) {
      double mx = -std::numeric_limits<double>::infinity();
      for (int c = 0; c < x.cols; ++c) mx = std::max(mx, double(x.row(i)[c]));
      double sum = 0;
      for (int c = 0; c < x.cols; ++c) sum += std::exp(double(x.row(i)[c]) - mx);
      const double ls = std::log(sum);
      for (int c = 0; c < x.cols; ++c) y.row(i)[c] = float(double(x.row(i)[c]) - mx - ls);
    }
  }
};

/// The Eigen/OpenMP implementation, compiled once in gyolo's library (src/transformer_cpu.cpp):
/// its GEMMs and array expressions were seconds of compile time in every file that included gyolo.
template <>
struct tkernels<cpu> {
  using ctx_t = context<cpu>;
  /// The CPU backend keeps only W^T ([in, out] row-major) for every linear layer.
  static constexpr bool packed_only = true;
  static constexpr int small_rows = 48;  // up to 8 six-row panels: the decoder's beams of up to 9 images

  static linear_pack prepack_linear(const std::vector<float>& w, int out, int in);
  /// y = act(x W^T + b). Few rows (the decoder's beams): the rows are packed as the run-time
  /// chosen GEMM's 6-wide panel and W^T streams once through it, split over column blocks per
  /// thread; otherwise Eigen GEMMs over row or column blocks.
  static void linear(ctx_t& ctx, cmview x, const linear_params& p, mview y, act a = act::none);
  /// Bias and activation on rows [r0, r0 + nr), columns [c0, c0 + nc).
  static void epilogue(mview y, int r0, int nr, int c0, int nc, const float* b, act a);
  static void add_layernorm(ctx_t&, cmview x, cmview r, const float* gamma, const float* beta, float eps, mview y);
  static void attention(ctx_t& ctx, cmview q, cmview k, cmview v, int heads, mview y, const unsigned char* key_masked = nullptr);
  static void gate_mix(ctx_t&, cmview e1, cmview a1, cmview e2, cmview a2, mview y);
  static void log_softmax(ctx_t& ctx, cmview x, mview y);
};

}  // namespace gyolo
