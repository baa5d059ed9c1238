// Reference forward/backward kernels of the sequence (token-major) training operations used by the
// train-mode Grit caption head (layers/grit_train.hpp): Linear, LayerNorm, multi-head attention with
// masks and attention-probability dropout, Embedding (padding_idx), ReLU, sigmoid, log-softmax,
// dropout, row masks, the gated sum of the parallel decoder layer, column concatenation, and the
// gather of region/grid tokens out of NCHW feature maps, plus the (non-differentiable) selections
// that pick those tokens from the detached detection and semantic maps.
//
// Conventions (same as train/ops_ref.hpp; PyTorch semantics, upstream models/grit.py):
//  * matrices are row-major mat_view<T> ([rows x cols], element (r, c) at data[r * ld + c]), so a
//    column block of a wider buffer is a valid operand;
//  * forward functions overwrite their output; backward functions ACCUMULATE (+=) into every
//    gradient output, and skip a gradient output whose data pointer is null;
//  * templated on the scalar type T (float and double); sums are accumulated in double.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gyolo/core/error.hpp"
#include "gyolo/core/tensor.hpp"
#include "gyolo/kernels/transformer.hpp"
#include "gyolo/text/beam_search.hpp"

namespace gyolo::train::ref {

template <class T> using cmat = mat_view<const T>;
template <class T> using mmat = mat_view<T>;

namespace detail {
template <class T>
inline void check_same(const cmat<T>& a, int rows, int cols, const char* what) {
  GYOLO_CHECK(a.rows == rows && a.cols == cols, std::string("train::ref::") + what + ": shape mismatch");
}
template <class T>
inline void acc(T& dst, double v) { dst = T(double(dst) + v); }
}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Linear
// ---------------------------------------------------------------------------------------------

/// torch.nn.Linear: y = x W^T + b. x [M, K], W [N, K] row-major (torch layout), b [N] or null,
/// y [M, N].
template <class T>
void linear(cmat<T> x, const T* w, const T* b, mmat<T> y) {
  const int M = x.rows, K = x.cols, N = y.cols;
  GYOLO_CHECK(y.rows == M, "train::ref::linear: shape mismatch");
  for (int i = 0; i < M; ++i) {
    const T* xr = x.row(i);
    for (int o = 0; o < N; ++o) {
      const T* wr = w + std::int64_t(o) * K;
      double s = b ? double(b[o]) : 0.0;
      for (int k = 0; k < K; ++k) s += double(xr[k]) * double(wr[k]);
      y.row(i)[o] = T(s);
    }
  }
}

/// dx += dy W, dW += dy^T x, db += column sums of dy (each skipped when null).
template <class T>
void linear_backward(cmat<T> x, const T* w, cmat<T> dy, mmat<T> dx, T* dw, T* db) {
  const int M = x.rows, K = x.cols, N = dy.cols;
  GYOLO_CHECK(dy.rows == M, "train::ref::linear_backward: shape mismatch");
  if (dx.data) {
    detail::check_same<T>(dx, M, K, "linear_backward(dx)");
    for (int i = 0; i < M; ++i)
      for (int k = 0; k < K; ++k) {
        double s = 0;
        for (int o = 0; o < N; ++o) s += double(dy.row(i)[o]) * double(w[std::int64_t(o) * K + k]);
        detail::acc(dx.row(i)[k], s);
      }
  }
  if (dw)
    for (int o = 0; o < N; ++o)
      for (int k = 0; k < K; ++k) {
        double s = 0;
        for (int i = 0; i < M; ++i) s += double(dy.row(i)[o]) * double(x.row(i)[k]);
        detail::acc(dw[std::int64_t(o) * K + k], s);
      }
  if (db)
    for (int o = 0; o < N; ++o) {
      double s = 0;
      for (int i = 0; i < M; ++i) s += double(dy.row(i)[o]);
      detail::acc(db[o], s);
    }
}

// ---------------------------------------------------------------------------------------------
// LayerNorm (over the last dimension, biased variance, eps inside the sqrt)
// ---------------------------------------------------------------------------------------------

namespace detail {
template <class T>
inline void row_stats(const T* x, int D, double eps, double& mean, double& rstd) {
  double s = 0;
  for (int c = 0; c < D; ++c) s += double(x[c]);
  mean = s / D;
  double q = 0;
  for (int c = 0; c < D; ++c) {
    const double t = double(x[c]) - mean;
    q += t * t;
  }
  rstd = 1.0 / std::sqrt(q / D + eps);
}
}  // namespace detail

/// y = (x - mean) * rstd * gamma + beta per row (gamma / beta null mean 1 / 0).
template <class T>
void layer_norm(cmat<T> x, const T* gamma, const T* beta, double eps, mmat<T> y) {
  detail::check_same<T>(y, x.rows, x.cols, "layer_norm");
  const int D = x.cols;
  for (int i = 0; i < x.rows; ++i) {
    double mean, rstd;
    detail::row_stats(x.row(i), D, eps, mean, rstd);
    for (int c = 0; c < D; ++c)
      y.row(i)[c] = T((double(x.row(i)[c]) - mean) * rstd * (gamma ? double(gamma[c]) : 1.0) + (beta ? double(beta[c]) : 0.0));
  }
}

/// Backward of layer_norm (statistics recomputed from x): with xh = (x - mean) rstd, g = dy * gamma,
///   dx += rstd (g - mean(g) - xh mean(g xh)),  dgamma += sum_rows dy xh,  dbeta += sum_rows dy.
/// tmp (optional): storage for the 4 D doubles of temporaries, reused across calls (else local).
template <class T>
void layer_norm_backward(cmat<T> x, const T* gamma, double eps, cmat<T> dy, mmat<T> dx, T* dgamma, T* dbeta,
                         std::vector<double>* tmp = nullptr) {
  detail::check_same<T>(dy, x.rows, x.cols, "layer_norm_backward");
  if (dx.data) detail::check_same<T>(dx, x.rows, x.cols, "layer_norm_backward(dx)");
  const int D = x.cols;
  std::vector<double> local;
  std::vector<double>& buf = tmp ? *tmp : local;
  buf.assign(4 * std::size_t(D), 0.0);
  double* dg = buf.data();
  double* dbt = dg + D;
  double* xh = dbt + D;
  double* g = xh + D;
  for (int i = 0; i < x.rows; ++i) {
    double mean, rstd;
    detail::row_stats(x.row(i), D, eps, mean, rstd);
    double mg = 0, mgx = 0;
    for (int c = 0; c < D; ++c) {
      const double d = double(dy.row(i)[c]);
      xh[std::size_t(c)] = (double(x.row(i)[c]) - mean) * rstd;
      g[std::size_t(c)] = d * (gamma ? double(gamma[c]) : 1.0);
      mg += g[std::size_t(c)];
      mgx += g[std::size_t(c)] * xh[std::size_t(c)];
      dg[std::size_t(c)] += d * xh[std::size_t(c)];
      dbt[std::size_t(c)] += d;
    }
    mg /= D;
    mgx /= D;
    if (dx.data)
      for (int c = 0; c < D; ++c) detail::acc(dx.row(i)[c], rstd * (g[std::size_t(c)] - mg - xh[std::size_t(c)] * mgx));
  }
  for (int c = 0; c < D; ++c) {
    if (dgamma) detail::acc(dgamma[c], dg[std::size_t(c)]);
    if (dbeta) detail::acc(dbeta[c], dbt[std::size_t(c)]);
  }
}

// ---------------------------------------------------------------------------------------------
// Elementwise
// ---------------------------------------------------------------------------------------------

/// y = max(x, 0).
template <class T>
void relu(cmat<T> x, mmat<T> y) {
  detail::check_same<T>(y, x.rows, x.cols, "relu");
  for (int i = 0; i < x.rows; ++i)
    for (int c = 0; c < x.cols; ++c) y.row(i)[c] = x.row(i)[c] > T(0) ? x.row(i)[c] : T(0);
}
/// dx += dy * (x > 0) (torch's threshold_backward: the gradient at 0 is 0). x may be the output.
template <class T>
void relu_backward(cmat<T> x, cmat<T> dy, mmat<T> dx) {
  if (!dx.data) return;
  detail::check_same<T>(dy, x.rows, x.cols, "relu_backward");
  detail::check_same<T>(dx, x.rows, x.cols, "relu_backward(dx)");
  for (int i = 0; i < x.rows; ++i)
    for (int c = 0; c < x.cols; ++c)
      if (x.row(i)[c] > T(0)) dx.row(i)[c] += dy.row(i)[c];
}

/// y = 1 / (1 + exp(-x)).
template <class T>
void sigmoid(cmat<T> x, mmat<T> y) {
  detail::check_same<T>(y, x.rows, x.cols, "sigmoid");
  for (int i = 0; i < x.rows; ++i)
    for (int c = 0; c < x.cols; ++c) {
      const double u = double(x.row(i)[c]);
      y.row(i)[c] = T(u >= 0 ? 1.0 / (1.0 + std::exp(-u)) : std::exp(u) / (1.0 + std::exp(u)));
    }
}
/// dx += dy * y (1 - y), y the sigmoid output.
template <class T>
void sigmoid_backward(cmat<T> y, cmat<T> dy, mmat<T> dx) {
  if (!dx.data) return;
  detail::check_same<T>(dy, y.rows, y.cols, "sigmoid_backward");
  detail::check_same<T>(dx, y.rows, y.cols, "sigmoid_backward(dx)");
  for (int i = 0; i < y.rows; ++i)
    for (int c = 0; c < y.cols; ++c) {
      const double s = double(y.row(i)[c]);
      detail::acc(dx.row(i)[c], double(dy.row(i)[c]) * s * (1.0 - s));
    }
}

/// y += x.
template <class T>
void add_into(cmat<T> x, mmat<T> y) {
  if (!y.data) return;
  detail::check_same<T>(y, x.rows, x.cols, "add_into");
  for (int i = 0; i < x.rows; ++i)
    for (int c = 0; c < x.cols; ++c) y.row(i)[c] += x.row(i)[c];
}

/// y = a + b.
template <class T>
void add(cmat<T> a, cmat<T> b, mmat<T> y) {
  detail::check_same<T>(b, a.rows, a.cols, "add");
  detail::check_same<T>(y, a.rows, a.cols, "add");
  for (int i = 0; i < a.rows; ++i)
    for (int c = 0; c < a.cols; ++c) y.row(i)[c] = T(double(a.row(i)[c]) + double(b.row(i)[c]));
}

/// y[i, :] = x[i, :] * r[i] (upstream's "* mask_pad": r is 0 or 1 per token).
template <class T>
void mul_rows(cmat<T> x, const T* r, mmat<T> y) {
  detail::check_same<T>(y, x.rows, x.cols, "mul_rows");
  for (int i = 0; i < x.rows; ++i)
    for (int c = 0; c < x.cols; ++c) y.row(i)[c] = T(double(x.row(i)[c]) * double(r[i]));
}
/// dx += dy * r[i].
template <class T>
void mul_rows_backward(cmat<T> dy, const T* r, mmat<T> dx) {
  if (!dx.data) return;
  detail::check_same<T>(dx, dy.rows, dy.cols, "mul_rows_backward");
  for (int i = 0; i < dy.rows; ++i)
    for (int c = 0; c < dy.cols; ++c) detail::acc(dx.row(i)[c], double(dy.row(i)[c]) * double(r[i]));
}

/// Dropout with a given mask of multipliers m (0 or 1/(1-p), same shape as x, contiguous
/// [rows x cols]): y = x * m.
template <class T>
void dropout(cmat<T> x, const T* m, mmat<T> y) {
  detail::check_same<T>(y, x.rows, x.cols, "dropout");
  for (int i = 0; i < x.rows; ++i)
    for (int c = 0; c < x.cols; ++c) y.row(i)[c] = T(double(x.row(i)[c]) * double(m[std::int64_t(i) * x.cols + c]));
}
/// dx += dy * m.
template <class T>
void dropout_backward(cmat<T> dy, const T* m, mmat<T> dx) {
  if (!dx.data) return;
  detail::check_same<T>(dx, dy.rows, dy.cols, "dropout_backward");
  for (int i = 0; i < dy.rows; ++i)
    for (int c = 0; c < dy.cols; ++c) detail::acc(dx.row(i)[c], double(dy.row(i)[c]) * double(m[std::int64_t(i) * dy.cols + c]));
}
/// n dropout multipliers: 0 with probability p, else 1 / (1 - p) (torch's scaling; p in [0, 1)).
template <class T, class R>
void dropout_mask(R& rng, double p, std::int64_t n, T* m) {
  GYOLO_CHECK(p >= 0 && p < 1, "dropout: p must be in [0, 1)");
  std::bernoulli_distribution keep(1.0 - p);
  const T s = T(1.0 / (1.0 - p));
  for (std::int64_t i = 0; i < n; ++i) m[i] = keep(rng) ? s : T(0);
}

/// Parallel decoder gate: y = (e1 * a1 + e2 * a2) / div (upstream divides by np.sqrt(2)).
template <class T>
void gate_mix(cmat<T> e1, cmat<T> a1, cmat<T> e2, cmat<T> a2, double div, mmat<T> y) {
  for (auto* m : {&a1, &e2, &a2}) detail::check_same<T>(*m, e1.rows, e1.cols, "gate_mix");
  detail::check_same<T>(y, e1.rows, e1.cols, "gate_mix");
  for (int i = 0; i < e1.rows; ++i)
    for (int c = 0; c < e1.cols; ++c)
      y.row(i)[c] = T((double(e1.row(i)[c]) * double(a1.row(i)[c]) + double(e2.row(i)[c]) * double(a2.row(i)[c])) / div);
}
/// de1 += dy a1 / div, da1 += dy e1 / div, de2 += dy a2 / div, da2 += dy e2 / div.
template <class T>
void gate_mix_backward(cmat<T> e1, cmat<T> a1, cmat<T> e2, cmat<T> a2, double div, cmat<T> dy, mmat<T> de1, mmat<T> da1,
                       mmat<T> de2, mmat<T> da2) {
  for (int i = 0; i < dy.rows; ++i)
    for (int c = 0; c < dy.cols; ++c) {
      const double g = double(dy.row(i)[c]) / div;
      if (de1.data) detail::acc(de1.row(i)[c], g * double(a1.row(i)[c]));
      if (da1.data) detail::acc(da1.row(i)[c], g * double(e1.row(i)[c]));
      if (de2.data) detail::acc(de2.row(i)[c], g * double(a2.row(i)[c]));
      if (da2.data) detail::acc(da2.row(i)[c], g * double(e2.row(i)[c]));
    }
}

/// y = [a, b] along columns (torch.cat(-1)).
template <class T>
void concat_cols(cmat<T> a, cmat<T> b, mmat<T> y) {
  GYOLO_CHECK(a.rows == b.rows && y.rows == a.rows && y.cols == a.cols + b.cols, "train::ref::concat_cols: shape mismatch");
  for (int i = 0; i < a.rows; ++i) {
    std::copy_n(a.row(i), a.cols, y.row(i));
    std::copy_n(b.row(i), b.cols, y.row(i) + a.cols);
  }
}
/// da += dy[:, :a.cols], db += dy[:, a.cols:].
template <class T>
void concat_cols_backward(cmat<T> dy, mmat<T> da, mmat<T> db, int a_cols) {
  if (da.data) add_into<T>(cmat<T>{dy.data, dy.rows, a_cols, dy.ld}, da);
  if (db.data) add_into<T>(cmat<T>{dy.data + a_cols, dy.rows, dy.cols - a_cols, dy.ld}, db);
}

// ---------------------------------------------------------------------------------------------
// Log-softmax (over columns)
// ---------------------------------------------------------------------------------------------

template <class T>
void log_softmax(cmat<T> x, mmat<T> y) {
  detail::check_same<T>(y, x.rows, x.cols, "log_softmax");
  for (int i = 0; i < x.rows; ++i) {
    double mx = -std::numeric_limits<double>::infinity();
    for (int c = 0; c < x.cols; ++c) mx = std::max(mx, double(x.row(i)[c]));
    double s = 0;
    for (int c = 0; c < x.cols; ++c) s += std::exp(double(x.row(i)[c]) - mx);
    const double lse = mx + std::log(s);
    for (int c = 0; c < x.cols; ++c) y.row(i)[c] = T(double(x.row(i)[c]) - lse);
  }
}
/// dx += dy - exp(y) * sum(dy), y the log-softmax output.
template <class T>
void log_softmax_backward(cmat<T> y, cmat<T> dy, mmat<T> dx) {
  if (!dx.data) return;
  detail::check_same<T>(dy, y.rows, y.cols, "log_softmax_backward");
  detail::check_same<T>(dx, y.rows, y.cols, "log_softmax_backward(dx)");
  for (int i = 0; i < y.rows; ++i) {
    double s = 0;
    for (int c = 0; c < y.cols; ++c) s += double(dy.row(i)[c]);
    for (int c = 0; c < y.cols; ++c) detail::acc(dx.row(i)[c], double(dy.row(i)[c]) - std::exp(double(y.row(i)[c])) * s);
  }
}

// ---------------------------------------------------------------------------------------------
// Embedding
// ---------------------------------------------------------------------------------------------

/// y[i, :] = table[ids[i], :] (accumulate: y += ...). table [V, D] row-major.
template <class T>
void embedding(const std::int64_t* ids, const T* table, int V, mmat<T> y, bool accumulate = false) {
  for (int i = 0; i < y.rows; ++i) {
    GYOLO_CHECK(ids[i] >= 0 && ids[i] < V, "train::ref::embedding: index out of range");
    const T* e = table + ids[i] * y.cols;
    for (int c = 0; c < y.cols; ++c) y.row(i)[c] = accumulate ? T(double(y.row(i)[c]) + double(e[c])) : e[c];
  }
}
/// dtable[ids[i], :] += dy[i, :], except rows with ids[i] == padding_idx (torch's padding_idx: that
/// row never receives a gradient); padding_idx < 0: none.
template <class T>
void embedding_backward(const std::int64_t* ids, cmat<T> dy, T* dtable, std::int64_t padding_idx) {
  if (!dtable) return;
  for (int i = 0; i < dy.rows; ++i) {
    if (ids[i] == padding_idx) continue;
    T* d = dtable + ids[i] * dy.cols;
    for (int c = 0; c < dy.cols; ++c) d[c] += dy.row(i)[c];
  }
}

// ---------------------------------------------------------------------------------------------
// Multi-head scaled dot-product attention (models.grit.Attention core, no memory slots)
// ---------------------------------------------------------------------------------------------

/// Boolean mask, true = masked (-inf score): element (b, i, j) at m[b * b_stride + i * q_stride + j].
/// q_stride 0 masks keys only (upstream's [B, 1, 1, nk] masks); m null = no mask.
struct attn_mask {
  const unsigned char* m = nullptr;
  std::int64_t b_stride = 0, q_stride = 0;
  bool operator()(int b, int i, int j) const { return m && m[b * b_stride + std::int64_t(i) * q_stride + j]; }
};

namespace detail {
/// P[i * nk + j] = softmax_j((q_i . k_j) / sqrt(dk)) of image b and head h (masked: -inf; a fully
/// masked row gives NaN, as torch does).
template <class T>
void attn_probs(cmat<T> q, cmat<T> k, int b, int h, int nq, int nk, int dk, const attn_mask& mask, std::vector<double>& P) {
  P.assign(std::size_t(nq) * std::size_t(nk), 0.0);
  const double sd = std::sqrt(double(dk));
  for (int i = 0; i < nq; ++i) {
    const T* qi = q.row(b * nq + i) + h * dk;
    double* a = P.data() + std::int64_t(i) * nk;
    double mx = -std::numeric_limits<double>::infinity();
    for (int j = 0; j < nk; ++j) {
      if (mask(b, i, j)) {
        a[j] = -std::numeric_limits<double>::infinity();
        continue;
      }
      const T* kj = k.row(b * nk + j) + h * dk;
      double s = 0;
      for (int d = 0; d < dk; ++d) s += double(qi[d]) * double(kj[d]);
      a[j] = s / sd;
      mx = std::max(mx, a[j]);
    }
    double sum = 0;
    for (int j = 0; j < nk; ++j) sum += (a[j] = std::exp(a[j] - mx));
    for (int j = 0; j < nk; ++j) a[j] /= sum;
  }
}
}  // namespace detail

/// y = concat_h( Drop(softmax(Q_h K_h^T / sqrt(dk), masked)) V_h ) for `batch` images: q rows
/// [batch * nq] (image-major), k / v rows [batch * nk], d = cols, heads own consecutive blocks of
/// dk = d / heads channels. probs (optional out, [batch, heads, nq, nk]) receives the softmax
/// before dropout; drop (optional, same layout) holds the dropout multipliers of the probabilities.
/// work (optional): the probabilities' storage, reused across calls (else local).
template <class T>
void attention(cmat<T> q, cmat<T> k, cmat<T> v, int batch, int heads, const attn_mask& mask, T* probs, const T* drop,
               mmat<T> y, std::vector<double>* work = nullptr) {
  GYOLO_CHECK(batch > 0 && q.rows % batch == 0 && k.rows % batch == 0 && v.rows == k.rows, "train::ref::attention: rows");
  GYOLO_CHECK(q.cols == k.cols && v.cols == q.cols && y.cols == q.cols && y.rows == q.rows && heads > 0 && q.cols % heads == 0,
              "train::ref::attention: shape mismatch");
  const int nq = q.rows / batch, nk = k.rows / batch, dk = q.cols / heads;
  std::vector<double> local;
  std::vector<double>& P = work ? *work : local;
  for (int b = 0; b < batch; ++b)
    for (int h = 0; h < heads; ++h) {
      detail::attn_probs(q, k, b, h, nq, nk, dk, mask, P);
      const std::int64_t off = (std::int64_t(b) * heads + h) * nq * nk;
      for (int i = 0; i < nq; ++i) {
        for (int j = 0; j < nk; ++j) {
          double& p = P[std::size_t(std::int64_t(i) * nk + j)];
          if (probs) probs[off + std::int64_t(i) * nk + j] = T(p);
          if (drop) p *= double(drop[off + std::int64_t(i) * nk + j]);
        }
        T* yr = y.row(b * nq + i) + h * dk;
        for (int d = 0; d < dk; ++d) {
          double s = 0;
          for (int j = 0; j < nk; ++j) s += P[std::size_t(std::int64_t(i) * nk + j)] * double(v.row(b * nk + j)[h * dk + d]);
          yr[d] = T(s);
        }
      }
    }
}

/// Gradients of attention (probabilities recomputed in double from q and k):
///   dPd = dy V^T,  dV += Pd^T dy,  dP = dPd * drop,  dS = P (dP - sum_j P dP),
///   dQ += dS K / sqrt(dk),  dK += dS^T Q / sqrt(dk).
/// work_p, work_ds (optional): storage of the probabilities and their gradient, reused across calls.
template <class T>
void attention_backward(cmat<T> q, cmat<T> k, cmat<T> v, int batch, int heads, const attn_mask& mask, const T* drop, cmat<T> dy,
                        mmat<T> dq, mmat<T> dk_, mmat<T> dv, std::vector<double>* work_p = nullptr,
                        std::vector<double>* work_ds = nullptr) {
  const int nq = q.rows / batch, nk = k.rows / batch, dk = q.cols / heads;
  GYOLO_CHECK(dy.rows == q.rows && dy.cols == q.cols, "train::ref::attention_backward: dy shape");
  const double sd = std::sqrt(double(dk));
  std::vector<double> local_p, local_ds;
  std::vector<double>& P = work_p ? *work_p : local_p;
  std::vector<double>& dS = work_ds ? *work_ds : local_ds;
  dS.assign(std::size_t(nq) * std::size_t(nk), 0.0);
  for (int b = 0; b < batch; ++b)
    for (int h = 0; h < heads; ++h) {
      detail::attn_probs(q, k, b, h, nq, nk, dk, mask, P);
      const std::int64_t off = (std::int64_t(b) * heads + h) * nq * nk;
      auto dm = [&](int i, int j) { return drop ? double(drop[off + std::int64_t(i) * nk + j]) : 1.0; };
      if (dv.data)
        for (int j = 0; j < nk; ++j)
          for (int d = 0; d < dk; ++d) {
            double s = 0;
            for (int i = 0; i < nq; ++i) s += P[std::size_t(std::int64_t(i) * nk + j)] * dm(i, j) * double(dy.row(b * nq + i)[h * dk + d]);
            detail::acc(dv.row(b * nk + j)[h * dk + d], s);
          }
      for (int i = 0; i < nq; ++i) {
        const T* g = dy.row(b * nq + i) + h * dk;
        double dot = 0;
        double* ds = dS.data() + std::int64_t(i) * nk;
        const double* p = P.data() + std::int64_t(i) * nk;
        for (int j = 0; j < nk; ++j) {
          double dp = 0;
          const T* vj = v.row(b * nk + j) + h * dk;
          for (int d = 0; d < dk; ++d) dp += double(g[d]) * double(vj[d]);
          ds[j] = dp * dm(i, j);
          dot += p[j] * ds[j];
        }
        for (int j = 0; j < nk; ++j) ds[j] = p[j] == 0.0 ? 0.0 : p[j] * (ds[j] - dot);
      }
      if (dq.data)
        for (int i = 0; i < nq; ++i)
          for (int d = 0; d < dk; ++d) {
            double s = 0;
            for (int j = 0; j < nk; ++j) s += dS[std::size_t(std::int64_t(i) * nk + j)] * double(k.row(b * nk + j)[h * dk + d]);
            detail::acc(dq.row(b * nq + i)[h * dk + d], s / sd);
          }
      if (dk_.data)
        for (int j = 0; j < nk; ++j)
          for (int d = 0; d < dk; ++d) {
            double s = 0;
            for (int i = 0; i < nq; ++i) s += dS[std::size_t(std::int64_t(i) * nk + j)] * double(q.row(b * nq + i)[h * dk + d]);
            detail::acc(dk_.row(b * nk + j)[h * dk + d], s / sd);
          }
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens out of NCHW feature maps
// ---------------------------------------------------------------------------------------------

/// y[rows[k], c] = x[img, c, pos[k]] (pos: flat in-plane index h * W + w): token-major rows from a
/// channel-major map ('b c h w -> b (h w) c' followed by a gather). rows null: row k.
template <class T>
void gather_tokens(cview<T> x, int img, const std::int64_t* pos, std::size_t npos, const int* rows, mmat<T> y) {
  GYOLO_CHECK(y.cols == x.c && img >= 0 && img < x.n, "train::ref::gather_tokens: shape mismatch");
  for (std::size_t k = 0; k < npos; ++k) {
    GYOLO_CHECK(pos[k] >= 0 && pos[k] < x.plane(), "train::ref::gather_tokens: position out of range");
    const int r = rows ? rows[k] : int(k);
    GYOLO_CHECK(r >= 0 && r < y.rows, "train::ref::gather_tokens: row out of range");
    for (int c = 0; c < x.c; ++c) y.row(r)[c] = x.channel(img, c)[pos[k]];
  }
}
template <class T>
void gather_tokens(cview<T> x, int img, const std::vector<std::int64_t>& pos, const int* rows, mmat<T> y) {
  gather_tokens<T>(x, img, pos.data(), pos.size(), rows, y);
}
/// dx[img, c, pos[k]] += dy[rows[k], c] (repeated positions accumulate).
template <class T>
void gather_tokens_backward(cmat<T> dy, int img, const std::int64_t* pos, std::size_t npos, const int* rows, view<T> dx) {
  if (!dx.data) return;
  GYOLO_CHECK(dy.cols == dx.c, "train::ref::gather_tokens_backward: shape mismatch");
  for (std::size_t k = 0; k < npos; ++k) {
    const int r = rows ? rows[k] : int(k);
    for (int c = 0; c < dx.c; ++c) dx.channel(img, c)[pos[k]] += dy.row(r)[c];
  }
}
template <class T>
void gather_tokens_backward(cmat<T> dy, int img, const std::vector<std::int64_t>& pos, const int* rows, view<T> dx) {
  gather_tokens_backward<T>(dy, img, pos.data(), pos.size(), rows, dx);
}

// ---------------------------------------------------------------------------------------------
// Token selection from detached maps (no gradient)
// ---------------------------------------------------------------------------------------------

// region_scores, select_topk_anchors and semantic_argmax are in kernels/transformer.hpp (the
// inference caption head's backends run them too).

}  // namespace gyolo::train::ref
