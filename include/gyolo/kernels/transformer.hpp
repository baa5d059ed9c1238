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
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "gyolo/core/parallel.hpp"
#include "gyolo/kernels/cpu_gemm.hpp"
#include "gyolo/kernels/desc.hpp"
#include "gyolo/text/beam_search.hpp"

namespace gyolo {

// ---------------------------------------------------------------------------------------------
// Token selection from detached maps (no gradient): the train-mode Grit and the inference head's
// host backends run these; a device backend computes the scores and arg-maxes on the device
// (tkernels<B>::region_scores / semantic_argmax) and ranks them with the same topk.
// ---------------------------------------------------------------------------------------------
namespace train::ref {

/// Grit's detection-guided region score of every anchor of image img (levels in order): the
/// maximum raw class logit of the one-to-one head maps (channels 4 * reg_max ..), as torch.max over
/// the class dimension: a NaN logit propagates (the first NaN wins; a later larger value never
/// replaces it). Used by the inference caption head and the train-mode Grit alike.
/// Writes the scores into `score` (resized) with `best` as temporary storage (both reused).
template <class T>
void region_scores(const std::array<cview<T>, 3>& d3, int img, int reg_max, std::vector<float>& score, std::vector<T>& best) {
  score.clear();
  for (const auto& m : d3) {
    const int nc = m.c - 4 * reg_max;
    GYOLO_CHECK(nc > 0, "Grit: head map has no class channels");
    const std::int64_t hw = m.plane(), a0 = std::int64_t(score.size());
    best.assign(m.channel(img, 4 * reg_max), m.channel(img, 4 * reg_max) + hw);
    for (int c = 1; c < nc; ++c) {
      const T* p = m.channel(img, 4 * reg_max + c);
      for (std::int64_t a = 0; a < hw; ++a) {
        T& s = best[std::size_t(a)];
        if (!(p[a] <= s) && !std::isnan(s)) s = p[a];
      }
    }
    score.resize(std::size_t(a0 + hw));
    for (std::int64_t a = 0; a < hw; ++a) score[std::size_t(a0 + a)] = float(best[std::size_t(a)]);
  }
}
template <class T>
std::vector<float> region_scores(const std::array<cview<T>, 3>& d3, int img, int reg_max) {
  std::vector<float> score;
  std::vector<T> best;
  region_scores<T>(d3, img, reg_max, score, best);
  return score;
}

/// Reused storage of select_topk_anchors (no allocation once grown).
template <class T>
struct topk_anchor_workspace {
  std::vector<float> score;
  std::vector<T> best;
  std::vector<torch_order::elem> work;
  std::vector<std::int64_t> idx;
};

/// The top k of scores in torch.topk's order (descending, torch's CPU order: NaN first, ties by
/// torch_order::topk_desc) into idx; throws when there are fewer than k. `hint` (may be empty) is
/// appended to that error.
inline void topk_anchors(const std::vector<float>& score, int k, std::vector<torch_order::elem>& work, std::vector<std::int64_t>& idx,
                         const std::string& hint = {}) {
  GYOLO_CHECK(std::int64_t(score.size()) >= k, "caption needs at least " + std::to_string(k) + " anchors, the input has " +
                                                   std::to_string(score.size()) + (hint.empty() ? "" : " (" + hint + ")"));
  torch_order::topk_desc(score, k, work, idx);
}

/// Grit's detection-guided selection for image img: topk_anchors of region_scores. Returns flat
/// anchor indices. This form leaves the indices in ws.idx (ws reused: no allocation once grown).
template <class T>
void select_topk_anchors(const std::array<cview<T>, 3>& d3, int img, int reg_max, int k, topk_anchor_workspace<T>& ws,
                         const std::string& hint = {}) {
  region_scores<T>(d3, img, reg_max, ws.score, ws.best);
  topk_anchors(ws.score, k, ws.work, ws.idx, hint);
}
template <class T>
std::vector<std::int64_t> select_topk_anchors(const std::array<cview<T>, 3>& d3, int img, int reg_max, int k,
                                              const std::string& hint = {}) {
  topk_anchor_workspace<T> ws;
  select_topk_anchors<T>(d3, img, reg_max, k, ws, hint);
  return std::move(ws.idx);
}

/// Grit's semantics-guided selection for image i: per channel, the first flat position of its
/// maximum (torch max over the flattened plane).
/// This form writes the sem.c positions to pos.
template <class T>
void semantic_argmax(cview<T> sem, int img, std::int64_t* pos) {
  for (int c = 0; c < sem.c; ++c) {
    const T* p = sem.channel(img, c);
    T m = p[0];
    std::int64_t k = 0;
    for (std::int64_t j = 0; j < sem.plane(); ++j)
      if (!(p[j] <= m)) {
        m = p[j];
        k = j;
        if (std::isnan(m)) break;
      }
    pos[std::size_t(c)] = k;
  }
}
template <class T>
std::vector<std::int64_t> semantic_argmax(cview<T> sem, int img) {
  std::vector<std::int64_t> pos(std::size_t(sem.c));
  semantic_argmax<T>(sem, img, pos.data());
  return pos;
}

}  // namespace train::ref

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

/// Token-major activations of the caption head on backend B (rows of d floats): a host vector for
/// the host backends; device memory on the context's stream for CUDA (specialised there).
template <class B>
struct token_store {
  using type = std::vector<float>;
  static type make(context<B>&, std::size_t n) { return type(n); }
  static std::size_t size(const type& t) { return t.size(); }
};
template <class B> using token_buffer = typename token_store<B>::type;

namespace detail {
/// The data-movement and selection ops of the caption head, the same for both host backends
/// (tkernels<reference> and tkernels<cpu>); a device backend has its own (tkernels<cuda>).
template <class Ctx>
struct host_token_ops {
  /// y = x (same shape; row strides may differ).
  static void copy(Ctx&, cmview x, mview y) {
    GYOLO_CHECK(x.rows == y.rows && x.cols == y.cols, "copy: shape mismatch");
    for (int r = 0; r < x.rows; ++r) std::copy_n(x.row(r), x.cols, y.row(r));
  }
  static void fill(Ctx&, mview y, float v) {
    for (int r = 0; r < y.rows; ++r) std::fill_n(y.row(r), y.cols, v);
  }
  /// Row j of y = table row ids[j] + pos (token embedding plus position embedding; d = y.cols).
  static void embed(Ctx&, const float* table, std::span<const std::int64_t> ids, const float* pos, mview y) {
    GYOLO_CHECK(std::int64_t(ids.size()) == y.rows, "embed: one id per row");
    for (int j = 0; j < y.rows; ++j) {
      const float* e = table + ids[std::size_t(j)] * y.cols;
      float* o = y.row(j);
      for (int c = 0; c < y.cols; ++c) o[c] = e[c] + pos[c];
    }
  }
  /// g [1, C, 1, m] = columns `at` (flat positions) of image img of x [n, C, H, W].
  static void gather_columns(Ctx&, cview<float> x, int img, std::span<const std::int64_t> at, view<float> g) {
    const int m = int(at.size());
    GYOLO_CHECK(g.n == 1 && g.c == x.c && std::int64_t(g.h) * g.w == m, "gather_columns: shape mismatch");
    for (int c = 0; c < x.c; ++c) {
      const float* src = x.channel(img, c);
      float* dst = g.channel(0, c);
      for (int k = 0; k < m; ++k) dst[k] = src[at[std::size_t(k)]];
    }
  }
  /// out.row(row0 + rows[k]) = column k of y [1, C, H, W] (C = out.cols, k < H * W; rows empty:
  /// the identity, i.e. the token-major transpose of the map).
  static void columns_to_rows(Ctx&, cview<float> y, std::span<const int> rows, int row0, mview out) {
    const std::int64_t m = y.plane();
    GYOLO_CHECK(y.n == 1 && y.c == out.cols && (rows.empty() || std::int64_t(rows.size()) == m), "columns_to_rows: shape mismatch");
    for (int c = 0; c < y.c; ++c) {
      const float* src = y.channel(0, c);
      for (std::int64_t k = 0; k < m; ++k) out.row(row0 + (rows.empty() ? int(k) : rows[std::size_t(k)]))[c] = src[k];
    }
  }
  /// Grit's region score of every anchor of image img (train::ref::region_scores).
  static std::vector<float> region_scores(Ctx&, const std::array<cview<float>, 3>& d3, int img, int reg_max) {
    return train::ref::region_scores<float>(d3, img, reg_max);
  }
  /// Per semantic channel of image img: the first flat position of its maximum (torch max).
  static std::vector<std::int64_t> semantic_argmax(Ctx&, cview<float> sem, int img) { return train::ref::semantic_argmax<float>(sem, img); }
  /// Host rows: dst + rows[j] * ld = row j of x (the log-probs a beam search reads).
  static void download_rows(Ctx&, cmview x, std::span<const int> rows, float* dst, std::int64_t ld) {
    for (int j = 0; j < x.rows; ++j) std::copy_n(x.row(j), x.cols, dst + std::int64_t(rows[std::size_t(j)]) * ld);
  }
};
}  // namespace detail

template <class B> struct tkernels;

template <>
struct tkernels<reference> : detail::host_token_ops<context<reference>> {
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
  /// nk bytes in host memory on every backend): non-zero keys are excluded. A query whose keys are
  /// all masked gets zeros.
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
struct tkernels<cpu> : detail::host_token_ops<context<cpu>> {
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
