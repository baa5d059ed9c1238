// The caption head's transformer kernels on the CPU (tkernels<cpu>, kernels/transformer.hpp):
// Eigen GEMMs and array expressions, compiled once in gyolo's library.
#ifndef EIGEN_DONT_PARALLELIZE
#define EIGEN_DONT_PARALLELIZE
#endif
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

#include "gyolo/kernels/transformer.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace gyolo {

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

linear_pack tkernels<cpu>::prepack_linear(const std::vector<float>& w, int out, int in) {
  linear_pack pk;
  pk.wt.resize(w.size());
  for (int o = 0; o < out; ++o)
    for (int i = 0; i < in; ++i) pk.wt[std::size_t(i) * out + o] = w[std::size_t(o) * in + i];
  return pk;
}

void tkernels<cpu>::linear(context<cpu>& ctx, cmview x, const linear_params& p, mview y, act a) {
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

void tkernels<cpu>::epilogue(mview y, int r0, int nr, int c0, int nc, const float* b, act a) {
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

void tkernels<cpu>::add_layernorm(context<cpu>&, cmview x, cmview r, const float* gamma, const float* beta, float eps, mview y) {
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

void tkernels<cpu>::attention(context<cpu>& ctx, cmview q, cmview k, cmview v, int heads, mview y, const unsigned char* key_masked) {
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

void tkernels<cpu>::gate_mix(context<cpu>&, cmview e1, cmview a1, cmview e2, cmview a2, mview y) {
  const float s2 = float(std::sqrt(2.0));
  for (int i = 0; i < y.rows; ++i) {
    const int d = y.cols;
    using A = Eigen::Map<const Eigen::ArrayXf>;
    Eigen::Map<Eigen::ArrayXf>(y.row(i), d) = (A(e1.row(i), d) * A(a1.row(i), d) + A(e2.row(i), d) * A(a2.row(i), d)) / s2;
  }
}

void tkernels<cpu>::log_softmax(context<cpu>& ctx, cmview x, mview y) {
  const int T = double(x.rows) * x.cols < 4e4 ? 1 : std::min(ctx.threads(), x.rows);
  par::for_static((T > 1) ? T : 1, int(x.rows), [&](int i) {
    Eigen::Map<const Eigen::ArrayXf> xi(x.row(i), x.cols);
    Eigen::Map<Eigen::ArrayXf> yi(y.row(i), x.cols);
    const float mx = xi.maxCoeff();
    const float ls = std::log((xi - mx).exp().sum());
    yi = xi - mx - ls;
  });
}

}  // namespace gyolo
