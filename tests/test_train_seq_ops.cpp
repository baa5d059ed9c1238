// Sequence training ops (include/gyolo/train/ops_seq.hpp): every backward against central finite
// differences in double of L = sum(y * r), gradient outputs prefilled (backward must accumulate, not
// overwrite), operands as column blocks of wider buffers (ld != cols) whose other elements must stay
// untouched, and the float instantiation against the double one. Plus the token selections.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gyolo/train/ops_seq.hpp"
#include "test_util.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_train_seq_ops {

using namespace gyolo;
using namespace gyolo::test;
namespace tr = gyolo::train::ref;

namespace {

/// A buffer holding one operand (a column block of a [rows, cols + extra] matrix, or a channel slice
/// of an [n, c + extra, h, w] map) with sentinels everywhere else.
template <class T>
struct sbuf {
  std::vector<T> store;
  std::vector<char> inside;
  std::vector<T*> el;  // the operand's elements in row-major / NCHW order
  mat_view<T> m;
  view<T> v;

  static T sentinel(std::size_t i) { return T(1000.0 + double(i % 7)); }
  void finish() {
    for (std::size_t i = 0; i < store.size(); ++i)
      if (!inside[i]) store[i] = sentinel(i);
  }
  void mark(T* p) {
    el.push_back(p);
    inside[std::size_t(p - store.data())] = 1;
  }
  /// Matrix [rows, cols] at column c0 of a [rows, cols + extra] buffer.
  sbuf(int rows, int cols, int c0, int extra) {
    REQUIRE((c0 >= 0 && c0 <= extra));
    const int ld = cols + extra;
    store.assign(std::size_t(rows) * ld + 1, T(0));
    inside.assign(store.size(), 0);
    m = {store.data() + c0, rows, cols, ld};
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) mark(m.row(r) + c);
    finish();
  }
  /// NCHW map [n, c, h, w]: channel slice c0 of [n, c + extra, h, w].
  sbuf(int n, int c, int h, int w, int c0, int extra) {
    const std::int64_t plane = std::int64_t(h) * w, bs = std::int64_t(c + extra) * plane;
    store.assign(std::size_t(n * bs), T(0));
    inside.assign(store.size(), 0);
    v = {store.data() + c0 * plane, n, c, h, w, bs};
    for (int i = 0; i < n; ++i)
      for (int ch = 0; ch < c; ++ch)
        for (std::int64_t j = 0; j < plane; ++j) mark(v.channel(i, ch) + j);
    finish();
  }
  bool outside_intact() const {
    for (std::size_t i = 0; i < store.size(); ++i)
      if (!inside[i] && store[i] != sentinel(i)) return false;
    return true;
  }
  mat_view<const T> cm() const { return m; }
  cview<T> cv() const { return v; }
  T* ptr() const { return m.data ? m.data : v.data; }
};

template <class T>
struct op_ctx {
  std::mt19937_64 rng{4242};
  std::deque<sbuf<T>> bufs;
  struct param {
    std::string name;
    sbuf<T>* x;
    sbuf<T>* g;
  };
  std::vector<param> params;
  sbuf<T>* y = nullptr;
  sbuf<T>* dy = nullptr;
  std::function<void()> fwd, bwd;

  double uni(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }
  sbuf<T>& fill(sbuf<T>& b, double lo, double hi) {
    for (T* p : b.el) *p = T(uni(lo, hi));
    return b;
  }
  sbuf<T>& mat(int rows, int cols, int c0 = 0, int extra = 0, double lo = -1, double hi = 1) {
    return fill(bufs.emplace_back(rows, cols, c0, extra), lo, hi);
  }
  sbuf<T>& map(int n, int c, int h, int w, int c0 = 0, int extra = 0, double lo = -1, double hi = 1) {
    return fill(bufs.emplace_back(n, c, h, w, c0, extra), lo, hi);
  }
  sbuf<T>& vec(int len, double lo = -1, double hi = 1) { return mat(1, len, 0, 0, lo, hi); }
  /// Gradient buffer of x's shape (another column/channel offset), prefilled with a nonzero pattern.
  sbuf<T>& grad_of(const sbuf<T>& x, int c0 = 0, int extra = 0) {
    auto& b = x.m.data ? bufs.emplace_back(x.m.rows, x.m.cols, c0, extra) : bufs.emplace_back(x.v.n, x.v.c, x.v.h, x.v.w, c0, extra);
    for (std::size_t i = 0; i < b.el.size(); ++i) *b.el[i] = T(0.5 + 0.25 * std::sin(double(i) + 1.0));
    return b;
  }
  void input(std::string name, sbuf<T>& x, sbuf<T>& g) { params.push_back({std::move(name), &x, &g}); }
  void output(int rows, int cols, int c0 = 0, int extra = 0, int dc0 = 0, int dextra = 0) {
    y = &bufs.emplace_back(rows, cols, c0, extra);
    for (T* p : y->el) *p = T(-777);
    dy = &mat(rows, cols, dc0, dextra);
  }
};

template <class T>
std::vector<double> values(const sbuf<T>& b) {
  std::vector<double> r;
  for (T* p : b.el) r.push_back(double(*p));
  return r;
}
/// As test_train_ops.cpp's check_op: sentinels intact, analytic gradient (after - prefill) equals
/// the central finite difference of L = sum(y * r) in double, forward repeatable, float vs double.
/// `expect` may adjust the finite-difference reference of an input (e.g. padding_idx rows).
template <class Setup>
void check_op(const std::string& name, Setup setup, double fd_tol = 1e-6, double ftol = 1e-5, double h = 1e-6,
              std::function<void(const std::string&, std::vector<double>&)> expect = {}) {
  INFO("op " << name);
  op_ctx<double> D;
  setup(D);
  REQUIRE(D.y);
  std::vector<std::vector<double>> pre;
  for (auto& p : D.params) pre.push_back(values(*p.g));
  D.fwd();
  REQUIRE(D.y->outside_intact());
  for (auto& p : D.params) REQUIRE(p.x->outside_intact());
  const std::vector<double> y0 = values(*D.y);
  for (double v : y0) REQUIRE(std::isfinite(v));
  D.bwd();
  for (auto& p : D.params) {
    INFO("gradient of " << p.name);
    REQUIRE(p.g->outside_intact());
  }
  auto loss = [&] {
    D.fwd();
    double s = 0;
    for (std::size_t i = 0; i < D.y->el.size(); ++i) s += *D.y->el[i] * *D.dy->el[i];
    return s;
  };
  for (std::size_t k = 0; k < D.params.size(); ++k) {
    auto& p = D.params[k];
    std::vector<double> fd, an;
    for (std::size_t i = 0; i < p.x->el.size(); ++i) {
      double* e = p.x->el[i];
      const double x0 = *e;
      *e = x0 + h;
      const double lp = loss();
      *e = x0 - h;
      const double lm = loss();
      *e = x0;
      fd.push_back((lp - lm) / (2 * h));
      an.push_back(*p.g->el[i] - pre[k][i]);
    }
    if (expect) expect(p.name, fd);
    require_values_close(an, fd, fd_tol, name + ": d/d" + p.name + " (analytic vs finite difference)");
  }
  D.fwd();
  REQUIRE(values(*D.y) == y0);

  op_ctx<float> F;
  setup(F);
  REQUIRE(F.params.size() == D.params.size());
  std::vector<std::vector<double>> fpre;
  for (auto& p : F.params) fpre.push_back(values(*p.g));
  F.fwd();
  F.bwd();
  REQUIRE(F.y->outside_intact());
  require_values_close(values(*F.y), y0, ftol, name + ": float forward vs double");
  for (std::size_t k = 0; k < F.params.size(); ++k) {
    REQUIRE(F.params[k].g->outside_intact());
    auto gf = values(*F.params[k].g), gd = values(*D.params[k].g);
    for (std::size_t i = 0; i < gf.size(); ++i) gf[i] -= fpre[k][i], gd[i] -= pre[k][i];
    require_values_close(gf, gd, ftol, name + ": float d/d" + F.params[k].name + " vs double");
  }
}

template <class T> using cm_t = mat_view<const T>;

}  // namespace

TEST_CASE("train seq ops: linear backward equals finite differences", "[train][seq]") {
  for (bool bias : {true, false}) {
    check_op(std::string("linear") + (bias ? " bias" : " no bias"), [&]<class T>(op_ctx<T>& c) {
      auto& x = c.mat(5, 7, 2, 3);
      auto& w = c.vec(4 * 7);
      sbuf<T>* b = bias ? &c.vec(4) : nullptr;
      auto& dx = c.grad_of(x, 1, 2);
      auto& dw = c.grad_of(w);
      sbuf<T>* db = bias ? &c.grad_of(*b) : nullptr;
      c.input("x", x, dx);
      c.input("w", w, dw);
      if (b) c.input("b", *b, *db);
      c.output(5, 4, 1, 2, 2, 3);
      c.fwd = [&c, &x, &w, b] { tr::linear<T>(x.cm(), w.ptr(), b ? b->ptr() : nullptr, c.y->m); };
      c.bwd = [&c, &x, &w, &dx, &dw, db] { tr::linear_backward<T>(x.cm(), w.ptr(), c.dy->cm(), dx.m, dw.ptr(), db ? db->ptr() : nullptr); };
    });
  }
}

TEST_CASE("train seq ops: layer_norm backward equals finite differences", "[train][seq]") {
  check_op("layer_norm", []<class T>(op_ctx<T>& c) {
    auto& x = c.mat(4, 9, 1, 2, -2, 3);
    auto& g = c.vec(9, 0.5, 1.5);
    auto& b = c.vec(9);
    auto& dx = c.grad_of(x, 2, 2);
    auto& dg = c.grad_of(g);
    auto& db = c.grad_of(b);
    c.input("x", x, dx);
    c.input("gamma", g, dg);
    c.input("beta", b, db);
    c.output(4, 9, 0, 1, 1, 1);
    c.fwd = [&c, &x, &g, &b] { tr::layer_norm<T>(x.cm(), g.ptr(), b.ptr(), 1e-5, c.y->m); };
    c.bwd = [&c, &x, &g, &dx, &dg, &db] { tr::layer_norm_backward<T>(x.cm(), g.ptr(), 1e-5, c.dy->cm(), dx.m, dg.ptr(), db.ptr()); };
  }, 2e-6);
}

TEST_CASE("train seq ops: relu, sigmoid, log_softmax, add, mul_rows, dropout backward", "[train][seq]") {
  check_op("relu", []<class T>(op_ctx<T>& c) {
    auto& x = c.mat(3, 8, 1, 1);
    for (T* p : x.el) *p = *p >= 0 ? *p + T(0.05) : *p - T(0.05);  // away from the kink
    auto& dx = c.grad_of(x, 0, 2);
    c.input("x", x, dx);
    c.output(3, 8, 1, 1);
    c.fwd = [&c, &x] { tr::relu<T>(x.cm(), c.y->m); };
    c.bwd = [&c, &x, &dx] { tr::relu_backward<T>(x.cm(), c.dy->cm(), dx.m); };
  });
  check_op("sigmoid", []<class T>(op_ctx<T>& c) {
    auto& x = c.mat(3, 8, 1, 1, -6, 6);
    auto& dx = c.grad_of(x, 0, 2);
    c.input("x", x, dx);
    c.output(3, 8, 1, 1);
    c.fwd = [&c, &x] { tr::sigmoid<T>(x.cm(), c.y->m); };
    c.bwd = [&c, &dx] { tr::sigmoid_backward<T>(c.y->cm(), c.dy->cm(), dx.m); };
  });
  check_op("log_softmax", []<class T>(op_ctx<T>& c) {
    auto& x = c.mat(4, 11, 2, 2, -4, 4);
    auto& dx = c.grad_of(x, 1, 1);
    c.input("x", x, dx);
    c.output(4, 11, 0, 3);
    c.fwd = [&c, &x] { tr::log_softmax<T>(x.cm(), c.y->m); };
    c.bwd = [&c, &dx] { tr::log_softmax_backward<T>(c.y->cm(), c.dy->cm(), dx.m); };
  });
  check_op("add", []<class T>(op_ctx<T>& c) {
    auto& a = c.mat(3, 5, 1, 1);
    auto& b = c.mat(3, 5, 0, 2);
    auto& da = c.grad_of(a);
    auto& db = c.grad_of(b, 1, 1);
    c.input("a", a, da);
    c.input("b", b, db);
    c.output(3, 5, 2, 2);
    c.fwd = [&c, &a, &b] { tr::add<T>(a.cm(), b.cm(), c.y->m); };
    c.bwd = [&c, &da, &db] {
      tr::add_into<T>(c.dy->cm(), da.m);
      tr::add_into<T>(c.dy->cm(), db.m);
    };
  });
  check_op("mul_rows", []<class T>(op_ctx<T>& c) {
    auto& x = c.mat(5, 6, 1, 1);
    auto& dx = c.grad_of(x, 0, 1);
    auto r = std::make_shared<std::vector<T>>(std::vector<T>{T(1), T(0), T(1), T(1), T(0)});  // mask_pad rows
    c.input("x", x, dx);
    c.output(5, 6, 0, 2);
    c.fwd = [&c, &x, r] { tr::mul_rows<T>(x.cm(), r->data(), c.y->m); };
    c.bwd = [&c, &dx, r] { tr::mul_rows_backward<T>(c.dy->cm(), r->data(), dx.m); };
  });
  check_op("dropout", []<class T>(op_ctx<T>& c) {
    auto& x = c.mat(4, 7, 1, 2);
    auto& dx = c.grad_of(x, 2, 2);
    auto m = std::make_shared<std::vector<T>>(28);
    std::mt19937_64 g(5);
    tr::dropout_mask<T>(g, 0.3, 28, m->data());
    int zeros = 0;
    for (T v : *m) {
      REQUIRE((v == T(0) || std::abs(double(v) - 1 / 0.7) < 1e-6));
      zeros += v == T(0);
    }
    REQUIRE((zeros > 0 && zeros < 28));
    c.input("x", x, dx);
    c.output(4, 7);
    c.fwd = [&c, &x, m] { tr::dropout<T>(x.cm(), m->data(), c.y->m); };
    c.bwd = [&c, &dx, m] { tr::dropout_backward<T>(c.dy->cm(), m->data(), dx.m); };
  });
}

TEST_CASE("train seq ops: gate_mix and concat_cols backward", "[train][seq]") {
  check_op("gate_mix", []<class T>(op_ctx<T>& c) {
    auto& e1 = c.mat(3, 6, 1, 1);
    auto& a1 = c.mat(3, 6, 0, 1, 0, 1);
    auto& e2 = c.mat(3, 6, 0, 0);
    auto& a2 = c.mat(3, 6, 2, 2, 0, 1);
    auto& g1 = c.grad_of(e1);
    auto& g2 = c.grad_of(a1, 1, 1);
    auto& g3 = c.grad_of(e2, 0, 2);
    auto& g4 = c.grad_of(a2);
    c.input("e1", e1, g1);
    c.input("a1", a1, g2);
    c.input("e2", e2, g3);
    c.input("a2", a2, g4);
    c.output(3, 6, 1, 1);
    c.fwd = [&] { tr::gate_mix<T>(e1.cm(), a1.cm(), e2.cm(), a2.cm(), std::sqrt(2.0), c.y->m); };
    c.bwd = [&] { tr::gate_mix_backward<T>(e1.cm(), a1.cm(), e2.cm(), a2.cm(), std::sqrt(2.0), c.dy->cm(), g1.m, g2.m, g3.m, g4.m); };
  });
  check_op("concat_cols", []<class T>(op_ctx<T>& c) {
    auto& a = c.mat(3, 4, 1, 1);
    auto& b = c.mat(3, 5, 0, 2);
    auto& da = c.grad_of(a, 0, 1);
    auto& db = c.grad_of(b, 2, 2);
    c.input("a", a, da);
    c.input("b", b, db);
    c.output(3, 9, 1, 1);
    c.fwd = [&] { tr::concat_cols<T>(a.cm(), b.cm(), c.y->m); };
    c.bwd = [&] { tr::concat_cols_backward<T>(c.dy->cm(), da.m, db.m, 4); };
  });
}

TEST_CASE("train seq ops: embedding backward (repeated ids, padding_idx gets no gradient)", "[train][seq]") {
  const std::vector<std::int64_t> ids{2, 0, 5, 2, 3, 0, 6};
  for (std::int64_t pad : {std::int64_t(-1), std::int64_t(0)}) {
    check_op("embedding pad " + std::to_string(pad), [&]<class T>(op_ctx<T>& c) {
      auto& table = c.mat(7, 5, 0, 0);
      auto& dt = c.grad_of(table);
      auto& base = c.mat(7, 5, 1, 1);  // accumulate onto another embedding (word + position)
      auto& dbase = c.grad_of(base);
      c.input("table", table, dt);
      c.input("base", base, dbase);
      c.output(7, 5, 1, 2);
      c.fwd = [&c, &table, &base, &ids] {
        for (int r = 0; r < 7; ++r) std::copy_n(base.m.row(r), 5, c.y->m.row(r));
        tr::embedding<T>(ids.data(), table.ptr(), 7, c.y->m, true);
      };
      c.bwd = [&c, &dt, &dbase, &ids, pad] {
        tr::embedding_backward<T>(ids.data(), c.dy->cm(), dt.ptr(), pad);
        tr::add_into<T>(c.dy->cm(), dbase.m);
      };
    }, 1e-6, 1e-5, 1e-6, [pad](const std::string& n, std::vector<double>& fd) {
      if (n == "table" && pad >= 0)
        for (int c = 0; c < 5; ++c) fd[std::size_t(pad * 5 + c)] = 0;  // torch: the padding row is never updated
    });
  }
}

TEST_CASE("train seq ops: multi-head attention backward (masks, dropout, batch, heads)", "[train][seq]") {
  // causal + key-PAD mask (decoder self-attention), key-only mask (grid), none (regions)
  static constexpr int B = 2, nq = 4, nk = 4;
  static std::vector<unsigned char> causal_pad(std::size_t(B * nq * nk));
  const int pad_from[2] = {4, 3};  // image 1: the last token is PAD
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < nq; ++i)
      for (int j = 0; j < nk; ++j) causal_pad[std::size_t((b * nq + i) * nk + j)] = j > i || j >= pad_from[b];
  static std::vector<unsigned char> keys{0, 1, 0, 0, 0, 0, 1, 1};
  struct cas {
    const char* name;
    int nq, nk, heads;
    tr::attn_mask mask;
    double p;
  };
  const cas cases[] = {
      {"self causal+pad", nq, nk, 2, {causal_pad.data(), nq * nk, nk}, 0.0},
      {"self causal+pad dropout", nq, nk, 2, {causal_pad.data(), nq * nk, nk}, 0.25},
      {"cross key mask", 3, 4, 2, {keys.data(), 4, 0}, 0.0},
      {"cross no mask dropout", 3, 5, 3, {}, 0.4},
  };
  for (const auto& cs : cases) {
    check_op(std::string("attention ") + cs.name, [&]<class T>(op_ctx<T>& c) {
      const int d = 2 * cs.heads;
      auto& q = c.mat(B * cs.nq, d, 1, 2, -1.5, 1.5);
      auto& k = c.mat(B * cs.nk, d, 0, 1, -1.5, 1.5);
      auto& v = c.mat(B * cs.nk, d, 1, 1);
      auto& dq = c.grad_of(q, 0, 1);
      auto& dk = c.grad_of(k, 1, 2);
      auto& dv = c.grad_of(v);
      auto drop = std::make_shared<std::vector<T>>(std::size_t(B * cs.heads * cs.nq * cs.nk), T(1));
      if (cs.p > 0) {
        std::mt19937_64 g(9);
        tr::dropout_mask<T>(g, cs.p, std::int64_t(drop->size()), drop->data());
      }
      const T* dm = cs.p > 0 ? drop->data() : nullptr;
      c.input("q", q, dq);
      c.input("k", k, dk);
      c.input("v", v, dv);
      c.output(B * cs.nq, d, 1, 1, 0, 2);
      const auto mask = cs.mask;
      const int heads = cs.heads;
      c.fwd = [&c, &q, &k, &v, mask, heads, dm, drop] { tr::attention<T>(q.cm(), k.cm(), v.cm(), B, heads, mask, nullptr, dm, c.y->m); };
      c.bwd = [&c, &q, &k, &v, &dq, &dk, &dv, mask, heads, dm] {
        tr::attention_backward<T>(q.cm(), k.cm(), v.cm(), B, heads, mask, dm, c.dy->cm(), dq.m, dk.m, dv.m);
      };
    }, 2e-6);
  }
  SECTION("probabilities: masked entries are zero, rows sum to one") {
    std::vector<double> q(8 * 4), k(8 * 4), v(8 * 4), y(8 * 4), P(std::size_t(B * 2 * nq * nk));
    std::mt19937_64 g(1);
    std::uniform_real_distribution<double> u(-1, 1);
    for (auto* a : {&q, &k, &v})
      for (auto& e : *a) e = u(g);
    tr::attention<double>({q.data(), 8, 4, 4}, {k.data(), 8, 4, 4}, {v.data(), 8, 4, 4}, B, 2,
                          {causal_pad.data(), nq * nk, nk}, P.data(), nullptr, {y.data(), 8, 4, 4});
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < 2; ++h)
        for (int i = 0; i < nq; ++i) {
          double s = 0;
          for (int j = 0; j < nk; ++j) {
            const double p = P[std::size_t(((b * 2 + h) * nq + i) * nk + j)];
            if (causal_pad[std::size_t((b * nq + i) * nk + j)]) CHECK(p == 0.0);
            s += p;
          }
          CHECK(s == Approx(1.0).epsilon(1e-12));
        }
  }
}

TEST_CASE("train seq ops: gather_tokens backward (levels, repeated positions, channel slices)", "[train][seq]") {
  check_op("gather_tokens", []<class T>(op_ctx<T>& c) {
    auto& x = c.map(2, 3, 4, 5, 1, 2);
    auto& dx = c.grad_of(x, 2, 3);
    static const std::vector<std::int64_t> p0{7, 0, 19, 7}, p1{3, 3, 12};
    static const int r0[4] = {6, 0, 2, 5}, r1[3] = {1, 3, 4};
    c.input("x", x, dx);
    c.output(7, 3, 1, 1);
    c.fwd = [&c, &x] {
      tr::gather_tokens<T>(x.cv(), 0, p0, r0, c.y->m);
      tr::gather_tokens<T>(x.cv(), 1, p1, r1, c.y->m);
    };
    c.bwd = [&c, &dx] {
      tr::gather_tokens_backward<T>(c.dy->cm(), 0, p0, r0, dx.v);
      tr::gather_tokens_backward<T>(c.dy->cm(), 1, p1, r1, dx.v);
    };
  });
}

TEST_CASE("train seq ops: token selection (top-k over levels, semantic arg-max ties)", "[train][seq]") {
  const int reg = 2, nc = 3;  // 4 * reg box channels, then nc class channels
  std::vector<tensor<float>> maps;
  const int hw[3][2] = {{3, 4}, {2, 2}, {1, 3}};
  std::mt19937_64 g(3);
  std::uniform_real_distribution<float> u(-5, 5);
  std::vector<std::vector<float>> score(2);
  for (auto& s : hw) {
    tensor<float> m({2, 4 * reg + nc, s[0], s[1]});
    for (std::int64_t i = 0; i < m.numel(); ++i) m[i] = u(g);
    for (int b = 0; b < 2; ++b)
      for (std::int64_t a = 0; a < std::int64_t(s[0]) * s[1]; ++a) {
        float best = -1e30f;
        for (int c = 0; c < nc; ++c) best = std::max(best, m.cv().channel(b, 4 * reg + c)[a]);
        score[std::size_t(b)].push_back(best);
      }
    maps.push_back(std::move(m));
  }
  const std::array<cview<float>, 3> d3{maps[0].cv(), maps[1].cv(), maps[2].cv()};
  for (int b = 0; b < 2; ++b) {
    auto idx = tr::select_topk_anchors<float>(d3, b, reg, 7);
    REQUIRE(idx.size() == 7);
    std::vector<std::int64_t> want(score[std::size_t(b)].size());
    for (std::size_t i = 0; i < want.size(); ++i) want[i] = std::int64_t(i);
    const auto& s = score[std::size_t(b)];
    std::stable_sort(want.begin(), want.end(), [&](auto x, auto y) { return s[std::size_t(x)] > s[std::size_t(y)]; });
    want.resize(7);
    CHECK(idx == want);
  }
  CHECK_THROWS(tr::select_topk_anchors<float>(d3, 0, reg, 100));
  // the error carries the caller's hint (the inference head adds its CLI advice)
  CHECK_THROWS_WITH(tr::select_topk_anchors<float>(d3, 0, reg, 100, "try a larger input"),
                    Catch::Contains("at least 100 anchors, the input has 19 (try a larger input)"));
  // NaN: torch.max over the classes propagates it (even when a later class is larger) and
  // torch.topk ranks NaN first (the inference head ranks by this same function)
  maps[1].v().channel(1, 4 * reg + 1)[2] = std::numeric_limits<float>::quiet_NaN();
  maps[1].v().channel(1, 4 * reg + 2)[2] = 1e30f;
  const auto sc = tr::region_scores<float>(d3, 1, reg);
  REQUIRE(sc.size() == 19);
  CHECK(std::isnan(sc[12 + 2]));  // level 0 has 3 x 4 anchors
  for (std::size_t a = 0; a < sc.size(); ++a)
    if (a != 14) CHECK(sc[a] == score[1][a]);
  const auto nidx = tr::select_topk_anchors<float>(d3, 1, reg, 7);
  CHECK(nidx[0] == 14);
  tensor<float> sem({1, 3, 2, 3});
  const float vals[3][6] = {{0, 2, 1, 2, 0, 0}, {-1, -1, -1, -1, -1, -1}, {0, 0, 0, 0, 0, 5}};
  for (int c = 0; c < 3; ++c)
    for (int j = 0; j < 6; ++j) sem.v().channel(0, c)[j] = vals[c][j];
  CHECK(tr::semantic_argmax<float>(sem.cv(), 0) == std::vector<std::int64_t>{1, 0, 5});  // first index on ties
}

}  // namespace test_train_seq_ops
