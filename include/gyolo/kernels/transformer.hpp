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
#ifndef EIGEN_DONT_PARALLELIZE
#define EIGEN_DONT_PARALLELIZE
#endif
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "gyolo/core/parallel.hpp"
#include "gyolo/kernels/cpu_gemm.hpp"
#include "gyolo/kernels/desc.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

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

namespace cpu_detail {
using rmat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using crmap = Eigen::Map<const rmat, 0, Eigen::OuterStride<>>;
using rmap = Eigen::Map<rmat, 0, Eigen::OuterStride<>>;
inline crmap map(cmview m) { return crmap(m.data, m.rows, m.cols, Eigen::OuterStride<>(m.ld)); }
inline rmap map(mview m) { return rmap(m.data, m.rows, m.cols, Eigen::OuterStride<>(m.ld)); }


inline int slot_id(int threads) {
#ifdef _OPENMP
  return omp_in_parallel() ? omp_get_thread_num() : threads;
#else
  (void)threads;
  return 0;
#endif
}
}  // namespace cpu_detail

template <>
struct tkernels<cpu> {
  using ctx_t = context<cpu>;
  /// The CPU backend keeps only W^T ([in, out] row-major) for every linear layer.
  static constexpr bool packed_only = true;
  static constexpr int small_rows = 48;  // up to 8 six-row panels: the decoder's beams of up to 9 images

  static linear_pack prepack_linear(const std::vector<float>& w, int out, int in) {
    linear_pack pk;
    pk.wt.resize(w.size());
    for (int o = 0; o < out; ++o)
      for (int i = 0; i < in; ++i) pk.wt[std::size_t(i) * out + o] = w[std::size_t(o) * in + i];
    return pk;
  }

  /// y = act(x W^T + b). Few rows (the decoder's beams): the rows are packed as the run-time
  /// chosen GEMM's 6-wide panel and W^T streams once through it, split over column blocks per
  /// thread; otherwise Eigen GEMMs over row or column blocks.
  static void linear(ctx_t& ctx, cmview x, const linear_params& p, mview y, act a = act::none) {
    GYOLO_CHECK(x.cols == p.in && y.cols == p.out && y.rows == x.rows, "linear: shape mismatch");
    GYOLO_CHECK(p.w || p.wt, "linear: no fp32 weights");
    if (x.rows == 0) return;
    const double work = double(x.rows) * p.out * p.in;
    ctx.add_flop(2.0 * work);
    const int T = work < 2e5 ? 1 : ctx.threads();
    if (p.wt && x.rows <= small_rows) {
      const auto& kt = cpu_detail::active_kernels();
      const int panels = (x.rows + cpu_detail::gemm_mr - 1) / cpu_detail::gemm_mr, K = p.in;
      float* pk = ctx.scratch(ctx.threads(), std::int64_t(panels) * K * cpu_detail::gemm_mr);
      for (int pi = 0; pi < panels; ++pi)
        for (int k = 0; k < K; ++k)
          for (int r = 0; r < cpu_detail::gemm_mr; ++r) {
            const int row = pi * cpu_detail::gemm_mr + r;
            pk[(std::int64_t(pi) * K + k) * cpu_detail::gemm_mr + r] = row < x.rows ? x.row(row)[k] : 0.f;
          }
      // Column chunks of 128: each chunk of W^T is read from memory once and reused from cache by
      // every row panel; chunks are split statically over the threads.
      const int chunk = 128, chunks = (p.out + chunk - 1) / chunk;
      par::for_static((T > 1 && chunks > 1) ? T : 1, int(chunks), [&](int t) {
        const int c0 = t * chunk, nc = std::min(chunk, p.out - c0);
        kt.gemm(pk, x.rows, K, p.wt + c0, p.out, y.data + c0, y.ld, nc, nullptr);
        epilogue(y, 0, x.rows, c0, nc, p.b, a);
      });
      return;
    }
    const int rblocks = x.rows >= 64 * T ? T : 1;
    const int cblocks = rblocks > 1 ? 1 : std::max(1, std::min(T * 2, p.out / 64));
    const int rb = (x.rows + rblocks - 1) / rblocks;
    const int cb = ((p.out + cblocks - 1) / cblocks + 15) / 16 * 16;
    const int tasks = rblocks * cblocks;
    par::for_static((T > 1 && tasks > 1) ? T : 1, int(tasks), [&](int t) {
      const int r0 = (t / cblocks) * rb, c0 = (t % cblocks) * cb;
      const int nr = std::min(rb, x.rows - r0), nc = std::min(cb, p.out - c0);
      if (nr <= 0 || nc <= 0) return;
      auto X = cpu_detail::map(x.middle_rows(r0, nr));
      auto Y = cpu_detail::map(y.middle_rows(r0, nr).middle_cols(c0, nc));
      if (p.wt) {
        cpu_detail::crmap Wt(p.wt + c0, p.in, nc, Eigen::OuterStride<>(p.out));
        Y.noalias() = X * Wt;
      } else {
        Eigen::Map<const cpu_detail::rmat> W(p.w + std::int64_t(c0) * p.in, nc, p.in);
        Y.noalias() = X * W.transpose();
      }
      epilogue(y, r0, nr, c0, nc, p.b, a);
    });
  }

  /// Bias and activation on rows [r0, r0 + nr), columns [c0, c0 + nc).
  static void epilogue(mview y, int r0, int nr, int c0, int nc, const float* b, act a) {
    for (int i = 0; i < nr; ++i) {
      Eigen::Map<Eigen::ArrayXf> row(y.row(r0 + i) + c0, nc);
      if (b) row += Eigen::Map<const Eigen::ArrayXf>(b + c0, nc);
      switch (a) {
        case act::relu: row = row.max(0.0f); break;
        case act::sigmoid: row = 1.0f / (1.0f + (-row).exp()); break;
        case act::silu: row = row / (1.0f + (-row).exp()); break;
        default: break;
      }
    }
  }

  static void add_layernorm(ctx_t&, cmview x, cmview r, const float* gamma, const float* beta, float eps, mview y) {
    const int d = x.cols;
    Eigen::Map<const Eigen::ArrayXf> g(gamma, d), b(beta, d);
    for (int i = 0; i < x.rows; ++i) {
      Eigen::Map<const Eigen::ArrayXf> xi(x.row(i), d);
      Eigen::Map<Eigen::ArrayXf> yi(y.row(i), d);
      if (r.data)
        yi = xi + Eigen::Map<const Eigen::ArrayXf>(r.row(i), d);
      else if (yi.data() != xi.data())
        yi = xi;
      const float m = yi.mean();
      const float var = (yi - m).square().mean();
      const float rs = 1.0f / std::sqrt(var + eps);
      yi = (yi - m) * rs * g + b;
    }
  }

  static void attention(ctx_t& ctx, cmview q, cmview k, cmview v, int heads, mview y, const unsigned char* key_masked = nullptr) {
    const int D = q.cols, dk = D / heads, nk = k.rows, nq = q.rows;
    GYOLO_CHECK(D % heads == 0 && k.cols == D && v.cols == D && v.rows == nk && y.cols == D && y.rows == nq,
                "attention: shape mismatch");
    if (nq == 0) return;
    ctx.add_flop(4.0 * double(nq) * nk * D);
    const float div = attention_divisor(dk);
    // Query blocks keep the score tile small; tasks = heads x query blocks.
    const int qb = std::min(nq, 64);
    const int nqb = (nq + qb - 1) / qb;
    const int tasks = heads * nqb;
    const double work = double(nq) * nk * D;
    const int T = work < 1e5 ? 1 : ctx.threads();
    par::for_static((T > 1 && tasks > 1) ? T : 1, int(tasks), [&](int t) {
      const int h = t / nqb, i0 = (t % nqb) * qb, rows = std::min(qb, nq - i0);
      float* sp = ctx.scratch(cpu_detail::slot_id(ctx.threads()), std::int64_t(rows) * nk);
      cpu_detail::rmap S(sp, rows, nk, Eigen::OuterStride<>(nk));
      auto Q = cpu_detail::map(q.middle_rows(i0, rows).middle_cols(h * dk, dk));
      auto K = cpu_detail::map(k.middle_cols(h * dk, dk));
      auto V = cpu_detail::map(v.middle_cols(h * dk, dk));
      S.noalias() = Q * K.transpose();
      for (int i = 0; i < rows; ++i) {
        auto s = S.row(i).array();
        s /= div;
        if (key_masked)
          for (int j = 0; j < nk; ++j)
            if (key_masked[j]) s(j) = -std::numeric_limits<float>::infinity();
        const float mx = s.maxCoeff();
        if (mx == -std::numeric_limits<float>::infinity()) {
          s.setZero();
          continue;
        }
        s = (s - mx).exp();
        s /= s.sum();
      }
      auto Y = cpu_detail::map(y.middle_rows(i0, rows).middle_cols(h * dk, dk));
      Y.noalias() = S * V;
    });
  }

  static void gate_mix(ctx_t&, cmview e1, cmview a1, cmview e2, cmview a2, mview y) {
    const float s2 = float(std::sqrt(2.0));
    for (int i = 0; i < y.rows; ++i) {
      const int d = y.cols;
      using A = Eigen::Map<const Eigen::ArrayXf>;
      Eigen::Map<Eigen::ArrayXf>(y.row(i), d) = (A(e1.row(i), d) * A(a1.row(i), d) + A(e2.row(i), d) * A(a2.row(i), d)) / s2;
    }
  }

  static void log_softmax(ctx_t& ctx, cmview x, mview y) {
    const int T = double(x.rows) * x.cols < 4e4 ? 1 : std::min(ctx.threads(), x.rows);
    par::for_static((T > 1) ? T : 1, int(x.rows), [&](int i) {
      Eigen::Map<const Eigen::ArrayXf> xi(x.row(i), x.cols);
      Eigen::Map<Eigen::ArrayXf> yi(y.row(i), x.cols);
      const float mx = xi.maxCoeff();
      const float ls = std::log((xi - mx).exp().sum());
      yi = xi - mx - ls;
    });
  }
};

}  // namespace gyolo
