// Primitive training ops (include/gyolo/train/ops_ref.hpp): every backward against central finite
// differences in double of L = sum(y * r), gradient outputs prefilled (backward must accumulate),
// tensors as channel slices of larger buffers (batch_stride != c*h*w) whose other elements must stay
// untouched, the float instantiation against the double one, and exact values produced by PyTorch
// 1.13 (nearest-resize indices, max-pool tie routing, BatchNorm2d training step).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gyolo/kernels/reference.hpp"
#include "gyolo/train/ops_ref.hpp"
#include "test_util.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_train_ops {

using namespace gyolo;
using namespace gyolo::test;
namespace tr = gyolo::train::ref;

namespace {

/// A channel slice [c0, c0 + c) of an [n, c + extra, h, w] buffer (extra == 0: contiguous). The
/// elements outside the slice hold a sentinel pattern that no op may read into a result or write.
template <class T>
struct sbuf {
  std::vector<T> store;
  std::vector<char> inside;
  view<T> v;
  std::vector<T*> el;  // the slice's elements in (n, c, y, x) order

  sbuf(int n, int c, int h, int w, int c0, int extra) {
    REQUIRE((c0 >= 0 && c0 <= extra));
    const std::int64_t plane = std::int64_t(h) * w, bs = std::int64_t(c + extra) * plane;
    store.assign(std::size_t(n * bs), T(0));
    inside.assign(store.size(), 0);
    v = {store.data() + c0 * plane, n, c, h, w, bs};
    for (int i = 0; i < n; ++i)
      for (int ch = 0; ch < c; ++ch)
        for (int y = 0; y < h; ++y)
          for (int x = 0; x < w; ++x) {
            T* p = &v.at(i, ch, y, x);
            el.push_back(p);
            inside[std::size_t(p - store.data())] = 1;
          }
    for (std::size_t i = 0; i < store.size(); ++i)
      if (!inside[i]) store[i] = sentinel(i);
  }
  static T sentinel(std::size_t i) { return T(1000.0 + double(i % 7)); }
  bool outside_intact() const {
    for (std::size_t i = 0; i < store.size(); ++i)
      if (!inside[i] && store[i] != sentinel(i)) return false;
    return true;
  }
  cview<T> cv() const { return v; }
  T* ptr() const { return v.data; }
};

/// One op under test, instantiated for T: its buffers, its differentiable inputs with their
/// gradient buffers, the output y and the upstream gradient r (= dy), forward and backward.
template <class T>
struct op_ctx {
  std::mt19937_64 rng{12345};
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
  /// Random values in [lo, hi) drawn in double (same sequence for every T).
  sbuf<T>& rand(int n, int c, int h, int w, int c0 = 0, int extra = 0, double lo = -1, double hi = 1) {
    auto& b = bufs.emplace_back(n, c, h, w, c0, extra);
    for (T* p : b.el) *p = T(uni(lo, hi));
    return b;
  }
  sbuf<T>& vec(int len, double lo = -1, double hi = 1) { return rand(1, 1, 1, len, 0, 0, lo, hi); }
  /// A gradient buffer of x's geometry (same slice layout), prefilled with a nonzero pattern.
  sbuf<T>& grad_of(const sbuf<T>& x, int c0 = 0, int extra = 0) {
    auto& b = bufs.emplace_back(x.v.n, x.v.c, x.v.h, x.v.w, c0, extra);
    for (std::size_t i = 0; i < b.el.size(); ++i) *b.el[i] = T(0.5 + 0.25 * std::sin(double(i) + 1.0));
    return b;
  }
  void input(std::string name, sbuf<T>& x, sbuf<T>& g) { params.push_back({std::move(name), &x, &g}); }
  /// Output y (sentinel-filled slice) and upstream gradient r of the same shape.
  void output(int n, int c, int h, int w, int c0 = 0, int extra = 0, int dc0 = 0, int dextra = 0) {
    y = &bufs.emplace_back(n, c, h, w, c0, extra);
    for (T* p : y->el) *p = T(-777);
    dy = &rand(n, c, h, w, dc0, dextra);
  }
};

template <class T>
std::vector<double> values(const sbuf<T>& b) {
  std::vector<double> r;
  for (T* p : b.el) r.push_back(double(*p));
  return r;
}
/// Builds the op for double and float with `setup` (a generic lambda taking op_ctx<T>&), then:
///  * forward writes only inside y's slice; backward writes only inside the gradient slices;
///  * for every input, (gradient after backward) - (prefill) equals the central finite difference of
///    L = sum(y * r) in double;
///  * the float instantiation's y and gradients equal the double ones within ftol.
template <class Setup>
void check_op(const std::string& name, Setup setup, double fd_tol = 1e-6, double ftol = 1e-5, double h = 1e-6) {
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

}  // namespace

// ------------------------------------------------------------------------------------------------
// Finite differences
// ------------------------------------------------------------------------------------------------

TEST_CASE("train ops: conv2d backward equals finite differences (groups, depthwise, k, stride, pad, slices)",
          "[train][ops]") {
  struct cas { int n, cin, cout, h, w, k, s, p, g; bool bias; };
  const cas cases[] = {
      {2, 3, 4, 7, 5, 3, 1, 1, 1, true},    // 3x3 same padding, H != W
      {2, 3, 5, 8, 5, 3, 2, 1, 1, false},   // stride 2, no bias
      {2, 4, 6, 6, 7, 3, 1, 0, 2, true},    // groups 2, pad 0
      {2, 4, 4, 7, 6, 3, 2, 1, 4, true},    // depthwise stride 2
      {2, 5, 5, 5, 4, 3, 1, 1, 5, false},   // depthwise stride 1
      {2, 5, 3, 4, 6, 1, 1, 0, 1, true},    // 1x1
      {2, 6, 3, 7, 5, 1, 2, 0, 3, true},    // grouped 1x1 stride 2, one output per group
      {1, 2, 3, 5, 3, 3, 2, 0, 1, true},    // stride 2, pad 0, odd sizes, batch 1
  };
  for (const auto& cs : cases) {
    const std::string name = "conv2d n" + std::to_string(cs.n) + " cin" + std::to_string(cs.cin) + " cout" +
                             std::to_string(cs.cout) + " " + std::to_string(cs.h) + "x" + std::to_string(cs.w) + " k" +
                             std::to_string(cs.k) + " s" + std::to_string(cs.s) + " p" + std::to_string(cs.p) + " g" +
                             std::to_string(cs.g);
    check_op(name, [&]<class T>(op_ctx<T>& c) {
      const conv_desc d{cs.cin, cs.cout, cs.k, cs.s, cs.p, cs.g};
      auto& x = c.rand(cs.n, cs.cin, cs.h, cs.w, 1, 3);
      auto& w = c.vec(d.weight_numel());
      sbuf<T>* b = cs.bias ? &c.vec(cs.cout) : nullptr;
      auto& dx = c.grad_of(x, 2, 2);
      auto& dw = c.grad_of(w);
      sbuf<T>* db = cs.bias ? &c.grad_of(*b) : nullptr;
      c.input("x", x, dx);
      c.input("w", w, dw);
      if (b) c.input("bias", *b, *db);
      c.output(cs.n, cs.cout, d.out_h(cs.h), d.out_w(cs.w), 1, 2, 0, 1);
      c.fwd = [&c, &x, &w, b, d] { tr::conv2d<T>(x.cv(), w.ptr(), b ? b->ptr() : nullptr, c.y->v, d); };
      c.bwd = [&c, &x, &w, &dx, &dw, db, d] {
        tr::conv2d_backward<T>(x.cv(), w.ptr(), c.dy->cv(), d, dx.v, dw.ptr(), db ? db->ptr() : nullptr);
      };
    });
  }
}

TEST_CASE("train ops: batchnorm_train backward equals finite differences", "[train][ops]") {
  struct cas { int n, c, h, w; };
  for (const cas cs : {cas{2, 3, 5, 3}, cas{1, 2, 4, 7}, cas{3, 1, 2, 1}}) {
    check_op("batchnorm " + std::to_string(cs.n) + "x" + std::to_string(cs.c) + "x" + std::to_string(cs.h) + "x" +
                 std::to_string(cs.w),
             [&]<class T>(op_ctx<T>& c) {
               auto& x = c.rand(cs.n, cs.c, cs.h, cs.w, 2, 3, -0.5, 2.0);
               auto& gamma = c.vec(cs.c, 0.5, 1.5);
               auto& beta = c.vec(cs.c);
               auto& mean = c.vec(cs.c);
               auto& invstd = c.vec(cs.c);
               auto& dx = c.grad_of(x, 1, 1);
               auto& dgamma = c.grad_of(gamma);
               auto& dbeta = c.grad_of(beta);
               c.input("x", x, dx);
               c.input("gamma", gamma, dgamma);
               c.input("beta", beta, dbeta);
               c.output(cs.n, cs.c, cs.h, cs.w, 0, 2, 1, 1);
               c.fwd = [&c, &x, &gamma, &beta, &mean, &invstd] {
                 tr::batchnorm_train<T>(x.cv(), gamma.ptr(), beta.ptr(), c.y->v, mean.ptr(), invstd.ptr(), nullptr,
                                        nullptr, 0.03, 1e-3);
               };
               c.bwd = [&c, &x, &gamma, &mean, &invstd, &dx, &dgamma, &dbeta] {
                 tr::batchnorm_backward<T>(x.cv(), gamma.ptr(), mean.ptr(), invstd.ptr(), c.dy->cv(), dx.v,
                                           dgamma.ptr(), dbeta.ptr());
               };
             },
             2e-6);
  }
}

TEST_CASE("train ops: silu backward equals finite differences", "[train][ops]") {
  check_op("silu", []<class T>(op_ctx<T>& c) {
    auto& u = c.rand(2, 3, 4, 5, 1, 2, -6, 6);
    auto& du = c.grad_of(u, 0, 3);
    c.input("u", u, du);
    c.output(2, 3, 4, 5, 1, 2, 1, 1);
    c.fwd = [&c, &u] { tr::silu<T>(u.cv(), c.y->v); };
    c.bwd = [&c, &u, &du] { tr::silu_backward<T>(u.cv(), c.dy->cv(), du.v); };
  });
}

TEST_CASE("train ops: maxpool2d backward equals finite differences (distinct values)", "[train][ops]") {
  struct cas { int h, w, k, s, p; };
  for (const cas cs : {cas{7, 6, 5, 1, 2}, cas{9, 8, 3, 2, 1}, cas{8, 7, 3, 2, 1}, cas{5, 6, 2, 2, 0}}) {
    check_op("maxpool k" + std::to_string(cs.k) + " s" + std::to_string(cs.s) + " p" + std::to_string(cs.p) + " " +
                 std::to_string(cs.h) + "x" + std::to_string(cs.w),
             [&]<class T>(op_ctx<T>& c) {
               auto& x = c.rand(2, 3, cs.h, cs.w, 1, 1);
               auto& dx = c.grad_of(x, 2, 2);
               c.input("x", x, dx);
               const int oh = (cs.h + 2 * cs.p - cs.k) / cs.s + 1, ow = (cs.w + 2 * cs.p - cs.k) / cs.s + 1;
               c.output(2, 3, oh, ow, 1, 1, 0, 2);
               c.fwd = [&c, &x, cs] { tr::maxpool2d<T>(x.cv(), c.y->v, cs.k, cs.s, cs.p); };
               c.bwd = [&c, &x, &dx, cs] { tr::maxpool2d_backward<T>(x.cv(), c.dy->cv(), cs.k, cs.s, cs.p, dx.v); };
             });
  }
}

TEST_CASE("train ops: avgpool2x2s1 backward equals finite differences", "[train][ops]") {
  check_op("avgpool2x2s1", []<class T>(op_ctx<T>& c) {
    auto& x = c.rand(2, 3, 5, 8, 1, 1);
    auto& dx = c.grad_of(x, 0, 2);
    c.input("x", x, dx);
    c.output(2, 3, 4, 7, 2, 2, 1, 1);
    c.fwd = [&c, &x] { tr::avgpool2x2s1<T>(x.cv(), c.y->v); };
    c.bwd = [&c, &dx] { tr::avgpool2x2s1_backward<T>(c.dy->cv(), dx.v); };
  });
}

TEST_CASE("train ops: resize_nearest backward equals finite differences (up, down, non-integer)", "[train][ops]") {
  struct cas { int h, w, oh, ow; };
  for (const cas cs : {cas{5, 4, 10, 8}, cas{9, 7, 5, 3}, cas{8, 6, 4, 3}, cas{7, 5, 11, 13}, cas{26, 13, 22, 20},
                       cas{3, 4, 3, 4}}) {
    check_op("resize_nearest " + std::to_string(cs.h) + "x" + std::to_string(cs.w) + " -> " + std::to_string(cs.oh) +
                 "x" + std::to_string(cs.ow),
             [&]<class T>(op_ctx<T>& c) {
               auto& x = c.rand(2, 2, cs.h, cs.w, 1, 2);
               auto& dx = c.grad_of(x, 1, 1);
               c.input("x", x, dx);
               c.output(2, 2, cs.oh, cs.ow, 0, 1, 1, 2);
               c.fwd = [&c, &x] { tr::resize_nearest<T>(x.cv(), c.y->v); };
               c.bwd = [&c, &dx] { tr::resize_nearest_backward<T>(c.dy->cv(), dx.v); };
             });
  }
}

TEST_CASE("train ops: psa_attention backward equals finite differences", "[train][ops]") {
  struct cas { int n, heads, kd, hd, h, w; double scale; };
  for (const cas cs : {cas{2, 2, 2, 3, 3, 5, 1 / std::sqrt(2.0)}, cas{1, 1, 4, 4, 2, 3, 0.5},
                       cas{2, 3, 1, 2, 1, 4, 1.0}}) {
    check_op("psa heads" + std::to_string(cs.heads) + " kd" + std::to_string(cs.kd) + " hd" + std::to_string(cs.hd),
             [&]<class T>(op_ctx<T>& c) {
               const int blk = 2 * cs.kd + cs.hd;
               auto& qkv = c.rand(cs.n, cs.heads * blk, cs.h, cs.w, 1, 2, -1.5, 1.5);
               auto& dqkv = c.grad_of(qkv, 2, 3);
               c.input("qkv", qkv, dqkv);
               c.output(cs.n, cs.heads * cs.hd, cs.h, cs.w, 1, 1, 2, 2);
               c.fwd = [&c, &qkv, cs] { tr::psa_attention<T>(qkv.cv(), c.y->v, cs.heads, cs.kd, cs.hd, cs.scale); };
               c.bwd = [&c, &qkv, &dqkv, cs] {
                 tr::psa_attention_backward<T>(qkv.cv(), c.dy->cv(), cs.heads, cs.kd, cs.hd, cs.scale, dqkv.v);
               };
             });
  }
}

// ------------------------------------------------------------------------------------------------
// Max-pool ties: plateaus route to the first maximum in row-major window order
// ------------------------------------------------------------------------------------------------

namespace {
/// Independent routing oracle: gather the in-bounds window in row-major order, std::max_element
/// (first largest) picks the element that receives dy.
template <class T>
void maxpool_route(cview<T> x, cview<T> dy, int k, int s, int p, std::vector<double>& dx /* [n][c][h][w] */) {
  for (int n = 0; n < x.n; ++n)
    for (int c = 0; c < x.c; ++c)
      for (int oy = 0; oy < dy.h; ++oy)
        for (int ox = 0; ox < dy.w; ++ox) {
          std::vector<T> win;
          std::vector<std::int64_t> idx;
          for (int ky = 0; ky < k; ++ky)
            for (int kx = 0; kx < k; ++kx) {
              const int iy = oy * s - p + ky, ix = ox * s - p + kx;
              if (iy < 0 || iy >= x.h || ix < 0 || ix >= x.w) continue;
              win.push_back(x.at(n, c, iy, ix));
              idx.push_back(((std::int64_t(n) * x.c + c) * x.h + iy) * x.w + ix);
            }
          const auto at = std::max_element(win.begin(), win.end()) - win.begin();
          dx[std::size_t(idx[std::size_t(at)])] += double(dy.at(n, c, oy, ox));
        }
}

template <class T>
void check_plateau_routing() {
  std::mt19937 g(7);
  std::uniform_int_distribution<int> di(0, 2);
  const int N = 2, C = 3, H = 9, W = 11;
  sbuf<T> x0(N, C, H, W, 1, 2), x1(N, C, H, W, 0, 1);
  for (T* p : x0.el) *p = T(di(g));
  tr::maxpool2d<T>(x0.cv(), x1.v, 5, 1, 2);  // SPPF-like: the output is full of plateaus
  context<reference> rc(1);
  struct cas { int k, s, p; };
  for (const sbuf<T>* xin : {&x0, &x1})
    for (const cas cs : {cas{5, 1, 2}, cas{3, 2, 1}, cas{3, 1, 1}}) {
      INFO("k" << cs.k << " s" << cs.s << " p" << cs.p << (xin == &x0 ? " on integers" : " on maxpool output"));
      const int oh = (H + 2 * cs.p - cs.k) / cs.s + 1, ow = (W + 2 * cs.p - cs.k) / cs.s + 1;
      sbuf<T> y(N, C, oh, ow, 1, 1), dy(N, C, oh, ow, 0, 2), dx(N, C, H, W, 1, 2);
      for (std::size_t i = 0; i < dy.el.size(); ++i) *dy.el[i] = T(1 + i % 17);  // exact in float
      tr::maxpool2d<T>(xin->cv(), y.v, cs.k, cs.s, cs.p);
      // forward equals kernels<reference>::maxpool2d
      tensor<float> xf({N, C, H, W}), yf({N, C, oh, ow});
      for (std::size_t i = 0; i < xin->el.size(); ++i) xf[std::int64_t(i)] = float(*xin->el[i]);
      kernels<reference>::maxpool2d(rc, xf.cv(), yf.v(), cs.k, cs.s, cs.p);
      for (std::size_t i = 0; i < y.el.size(); ++i) REQUIRE(double(*y.el[i]) == double(yf[std::int64_t(i)]));
      // backward: prefill + routing oracle, exactly (small integers)
      std::vector<double> expect(dx.el.size());
      for (std::size_t i = 0; i < dx.el.size(); ++i) *dx.el[i] = T(expect[i] = 0.5 * double(i % 5) - 1.0);
      maxpool_route<T>(xin->cv(), dy.cv(), cs.k, cs.s, cs.p, expect);
      tr::maxpool2d_backward<T>(xin->cv(), dy.cv(), cs.k, cs.s, cs.p, dx.v);
      REQUIRE(dx.outside_intact());
      for (std::size_t i = 0; i < dx.el.size(); ++i) REQUIRE(double(*dx.el[i]) == expect[i]);
    }
}
}  // namespace

TEST_CASE("train ops: maxpool2d backward on plateaus routes to the first maximum (float and double)",
          "[train][ops]") {
  check_plateau_routing<double>();
  check_plateau_routing<float>();
}

// ------------------------------------------------------------------------------------------------
// Exact values from PyTorch 1.13 (CPU, float64), produced by the script in the comment of each block
// ------------------------------------------------------------------------------------------------

namespace torch_ref {
// x = torch.arange(hin).view(1,1,hin,1); F.interpolate(x, size=(hout,1), mode='nearest').
// The first two pairs are where floor(i*hin/hout) in exact arithmetic differs from PyTorch's float
// computation (e.g. 26 -> 22, i = 11: exact 13, PyTorch 12).
struct nearest_case { int in, out; std::vector<int> src; };
const nearest_case nearest[] = {
{26, 22, {0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 20, 21, 22, 23, 24}},
{39, 33, {0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 20, 21, 22, 23, 24, 25, 27, 28, 29, 30, 31, 33, 34, 35, 36, 37}},
{5, 13, {0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4}},
{13, 5, {0, 2, 5, 7, 10}},
{7, 3, {0, 2, 4}},
{3, 7, {0, 0, 0, 1, 1, 2, 2}},
{20, 40, {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15, 16, 16, 17, 17, 18, 18, 19, 19}},
{80, 20, {0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64, 68, 72, 76}},
};
// torch.manual_seed(0); x = torch.randint(0,3,(1,1,7,9)).double();
// y = F.max_pool2d(x, k, s, p); dy = arange(1, y.numel()+1); (y*dy).sum().backward(); x.grad
const double mp_x[] = {
    2, 0, 2, 0, 1, 0,
    1, 1, 1, 0, 2, 2,
    0, 0, 1, 2, 0, 0,
    2, 0, 2, 2, 2, 2,
    2, 2, 1, 2, 0, 0,
    1, 0, 2, 0, 1, 0,
    1, 2, 2, 1, 2, 0,
    1, 1, 1, 2, 1, 1,
    2, 1, 1, 2, 2, 1,
    2, 2, 2, 1, 2, 2,
    1, 1, 0,
};
const double mp_dx_k5[] = {
    99, 0, 81, 0, 0, 0,
    0, 0, 0, 0, 118, 32,
    0, 0, 0, 336, 0, 0,
    114, 0, 81, 42, 43, 44,
    45, 0, 0, 141, 0, 0,
    0, 0, 255, 0, 0, 0,
    0, 226, 59, 0, 121, 0,
    0, 0, 0, 0, 0, 0,
    0, 0, 0, 179, 0, 0,
    0, 0, 0, 0, 0, 0,
    0, 0, 0,
};
const double mp_dx_k3[] = {
    1, 0, 2, 0, 3, 0,
    0, 5, 0, 0, 13, 0,
    0, 0, 0, 13, 0, 0,
    0, 0, 0, 8, 0, 0,
    0, 10, 0, 11, 0, 0,
    0, 0, 27, 0, 0, 0,
    0, 12, 0, 0, 0, 0,
    0, 0, 0, 16, 0, 0,
    35, 0, 0, 19, 35, 0,
    0, 0, 0, 0, 0, 0,
    0, 0, 0,
};
// N,C,H,W = 2,3,3,5; idx = arange(90).view(N,C,H,W); x = sin(1.3*idx) + 0.1*c (all float64);
// bn = BatchNorm2d(3, eps=1e-3, momentum=0.03); weight = 1+0.1c, bias = 0.05c, running_mean = 0.1c,
// running_var = 1+0.2c; train: y = bn(x), dy = cos(0.7*idx), (y*dy).sum().backward();
// then bn.eval(): bn_y_eval = bn(x) with the updated running statistics.
const double bn_y[] = {
    -0.016858810940000378, 1.3418498034970496, 0.71004711466809356, -0.98667445813617749, -1.262613835761641, 0.28648081647021084,
    1.391182203896941, 0.43310020589830317, -1.184172805910308, -1.0913280803615919, 0.57561664210352248, 1.3745834378375201,
    0.13508407930997179, -1.3270119693981175, -0.86973057160267431, 0.96797098373704515, 1.4739031509624043, -0.14979808255362392,
    -1.5244066057826513, -0.63611771182890375, 1.213723288625842, 1.3150949961988516, -0.48051237819298565, -1.5425298244049679,
    -0.31509929569429085, 1.403590607814015, 1.0956551510180939, -0.78777950045998346, -1.4874771697867546, 0.021620867818799589,
    1.7125544803314452, 0.94667062765264531, -1.1053567997120775, -1.4373028132844632, 0.43713427448584047, 1.7718997386762969,
    0.61155904722499677, -1.3439859685027884, -1.2298572791111644, 0.78674631806607054, 1.7514958287645177, 0.25103095964324085,
    -1.5164637408197734, -0.96160439564655265, 1.1027387545869582, 1.2923660961004004, -0.17129164778662787, -1.4087049238956881,
    -0.60706038377603466, 1.059230843243629, 1.1490482058743561, -0.46919094255756844, -1.4247624584682825, -0.31775183238262006,
    1.2300677750338529, 0.95113701276034945, -0.74590989900717597, -1.3748952587712497, -0.014354040921524574, 1.3425176829830814,
    0.824666743215825, -1.0582195647747543, -1.3611735628191954, 0.35963306596334105, 1.5832145789852827, 0.51702119312289252,
    -1.2769712835099993, -1.1705596697688465, 0.68036277091966468, 1.5641903266967878, 0.18611355776130678, -1.4349818409058188,
    -0.9241873124346579, 0.97018196230022857, 1.4728705577770529, -0.11953760354949418, -1.6149561383437363, -0.64372903438597084,
    1.3712937256825637, 1.4780990776652376, -0.47978306931089248, -1.6340507830957911, -0.29369915883292552, 1.5776535338227147,
    1.2384712160175633, -0.81434322204417986, -1.5734118193693534, 0.07330269743202443, 1.7133597034041208, 0.94407184255292542,
};
const double bn_dx[] = {
    1.4659616030585585, 0.94813693592064774, 0.19590388315654481, -0.52308777518507799, -1.1020085274986806, -1.3062032499484977,
    -0.82843927418066232, 0.25719362818454417, 1.3094846860121356, 1.6130331371509505, 1.0377334403759204, 0.081421888440128487,
    -0.6972056608553987, -1.1009363541323685, -1.1392250335793823, -0.89026324339688268, 0.23013471781844883, 0.95527100739993409,
    1.1305356272123808, 0.83133106085297637, 0.096384804388265466, -0.94104466923071928, -1.8046775398838073, -1.882162628591211,
    -1.0151169360754853, 0.24774116451488631, 1.1151302733634221, 1.2144608037753615, 0.71527150431058695, -0.067322003336864153,
    -0.9226966945415036, -1.5344809084539108, -1.2304278547236323, -0.38754536177585991, 0.55989165629561688, 1.3800438333754455,
    1.8393933529985935, 1.5895792580516019, 0.52508865342308586, -0.84041701003007874, -1.6347517810331536, -1.3743105239829521,
    -0.35269125213502078, 0.74806284260773481, 1.4735243709580885, 1.2815336406726312, 1.0754414509131422, 0.36877257326670321,
    -0.6748190193181709, -1.4552232303323813, -1.3782290038026421, -0.46780262635683456, 0.62724459694863388, 1.2616164607398863,
    1.2878828879583839, 0.90471323325467112, 0.25428998843733874, -0.58885048645201898, -1.3139191281124216, -1.3944146647362825,
    -0.78855824543597186, 0.06541492658969901, 0.89233435298101249, 1.3380720013341665, 0.99540794656483, -0.11498884516747952,
    -1.3484613807190566, -1.9189025299210871, -1.5702430591617418, -0.67898537148046034, 0.2342172792515502, 0.89810181310909942,
    1.1865666885178203, 0.90529307979764873, -0.030942599381320532, -0.82918256322315409, -1.2761421213097426, -1.2208852549264708,
    -0.57864436586194146, 0.5783116477795287, 1.7180280502410927, 2.0812075221738779, 1.3654119263745537, 0.060140712403852846,
    -1.0073133397642151, -1.3735892232069697, -1.1005183413093118, -0.40309205590993197, 0.57846543607183432, 1.5695393894329432,
};
const double bn_dgamma[] = {
    2.9160550947204826, -2.4338710909186956, 2.419906670598778,
};
const double bn_dbeta[] = {
    -1.1394090235962533, 4.829487423038648, -3.4537902022979114,
};
const double bn_rm[] = {
    0.00035867392990002054, 0.10057061328183865, 0.2005495312534237,
};
const double bn_rv[] = {
    0.98557698303763741, 1.1792987757080406, 1.3733321332056621,
};
const double bn_y_eval[] = {
    -0.0003611056816760392, 0.96972984984607036, 0.51863528284428162, -0.69279020922725287, -0.88980544241566339, 0.21621736145767101,
    1.0049522035824796, 0.32090069243671565, -0.83380010558883511, -0.76751081621049189, 0.42265459633318331, 0.99310101440470511,
    0.10812309911547555, -0.9357844303530416, -0.60929459771424399, 0.66253373450703723, 0.98983105320936049, -0.06057272526146526,
    -0.94983360461136013, -0.37518231327607121, 0.82151566067341797, 0.88709498183593893, -0.27451820892761047, -0.96155786577836755,
    -0.16750928186724914, 0.94434450711797824, 0.74513509551757595, -0.47329526197585259, -0.92594323715571236, 0.050321514057913304,
    1.0859900776098723, 0.62633168658202254, -0.60522793216223592, -0.80445105192525579, 0.32052466447592115, 1.1216071569757784,
    0.42520869732535571, -0.74844533959940895, -0.67994904012477797, 0.53035035654915919, 1.1093613988651696, 0.20883155335170145,
    -0.85196084659697224, -0.5189524498837812, 0.71999866215076103, 0.93439946592018353, -0.11062308287792529, -0.99411157676718886,
    -0.42175330240643893, 0.76794552737300403, 0.83207333977634623, -0.32331726060279364, -1.0055763374166988, -0.21519274476997394,
    0.88991970243810592, 0.69076868004461223, -0.52088909758276569, -0.96997214760766381, 0.0014272503460858062, 0.9702067025294917,
    0.56982744556222698, -0.64824817790792288, -0.84423498735292701, 0.26898815221240785, 1.0605467333204328, 0.37080558022337673,
    -0.7897629018999216, -0.72092316781605781, 0.47647441076776281, 1.0482395760220764, 0.15673502134600389, -0.89198299208698228,
    -0.56154011771256018, 0.66396405936542069, 0.98916304867679783, -0.01357155506597999, -0.91107275608036353, -0.32817407455522646,
    0.88117655548873053, 0.94527762782992841, -0.22977907868432765, -0.92253273614558995, -0.11809761342389627, 1.0050269501024141,
    0.80146083766630527, -0.43057111910864643, -0.88613921720326005, 0.10216487437362291, 1.08647334611163, 0.62477198092510566,
};
}  // namespace torch_ref

TEST_CASE("train ops: resize_nearest indices equal PyTorch interpolate(mode='nearest', size=...)", "[train][ops]") {
  for (const auto& nc : torch_ref::nearest) {
    INFO(nc.in << " -> " << nc.out);
    REQUIRE(int(nc.src.size()) == nc.out);
    // along H
    sbuf<double> xh(1, 1, nc.in, 1, 0, 0), yh(1, 1, nc.out, 1, 0, 0);
    for (int i = 0; i < nc.in; ++i) *xh.el[std::size_t(i)] = i;
    tr::resize_nearest<double>(xh.cv(), yh.v);
    for (int i = 0; i < nc.out; ++i) REQUIRE(*yh.el[std::size_t(i)] == nc.src[std::size_t(i)]);
    // along W, float
    sbuf<float> xw(1, 1, 1, nc.in, 0, 0), yw(1, 1, 1, nc.out, 0, 0);
    for (int i = 0; i < nc.in; ++i) *xw.el[std::size_t(i)] = float(i);
    tr::resize_nearest<float>(xw.cv(), yw.v);
    for (int i = 0; i < nc.out; ++i) REQUIRE(int(*yw.el[std::size_t(i)]) == nc.src[std::size_t(i)]);
  }
  // 2-D: 26x39 -> 22x33 reads x[src_h[oy], src_w[ox]]
  const auto& a = torch_ref::nearest[0];
  const auto& b = torch_ref::nearest[1];
  sbuf<double> x(1, 2, a.in, b.in, 1, 1), y(1, 2, a.out, b.out, 0, 1);
  for (std::size_t i = 0; i < x.el.size(); ++i) *x.el[i] = double(i);
  tr::resize_nearest<double>(x.cv(), y.v);
  for (int c = 0; c < 2; ++c)
    for (int oy = 0; oy < a.out; ++oy)
      for (int ox = 0; ox < b.out; ++ox)
        REQUIRE(y.v.at(0, c, oy, ox) == x.v.at(0, c, a.src[std::size_t(oy)], b.src[std::size_t(ox)]));
  // x2 upsampling equals kernels<reference>::upsample2x
  context<reference> rc(1);
  tensor<float> xf({2, 3, 5, 7}), y1({2, 3, 10, 14});
  for (std::int64_t i = 0; i < xf.numel(); ++i) xf[i] = float(std::sin(0.3 * double(i)));
  sbuf<float> y2(2, 3, 10, 14, 0, 0);
  kernels<reference>::upsample2x(rc, xf.cv(), y1.v());
  tr::resize_nearest<float>(xf.cv(), y2.v);
  for (std::size_t i = 0; i < y2.el.size(); ++i) REQUIRE(*y2.el[i] == y1[std::int64_t(i)]);
}

TEST_CASE("train ops: maxpool2d tie routing equals PyTorch's gradient", "[train][ops]") {
  struct cas { int k, s, p; const double* dx; };
  for (const cas cs : {cas{5, 1, 2, torch_ref::mp_dx_k5}, cas{3, 2, 1, torch_ref::mp_dx_k3}}) {
    INFO("k" << cs.k);
    const int H = 7, W = 9, oh = (H + 2 * cs.p - cs.k) / cs.s + 1, ow = (W + 2 * cs.p - cs.k) / cs.s + 1;
    sbuf<double> x(1, 1, H, W, 1, 1), dy(1, 1, oh, ow, 0, 1), dx(1, 1, H, W, 0, 0);
    for (std::size_t i = 0; i < x.el.size(); ++i) *x.el[i] = torch_ref::mp_x[i];
    for (std::size_t i = 0; i < dy.el.size(); ++i) *dy.el[i] = double(i + 1);
    for (std::size_t i = 0; i < dx.el.size(); ++i) *dx.el[i] = 0.25;
    tr::maxpool2d_backward<double>(x.cv(), dy.cv(), cs.k, cs.s, cs.p, dx.v);
    for (std::size_t i = 0; i < dx.el.size(); ++i) REQUIRE(*dx.el[i] == 0.25 + cs.dx[i]);
  }
}

namespace {
template <class T>
void check_batchnorm_torch(double tol) {
  const int N = 2, C = 3, H = 3, W = 5;
  sbuf<T> x(N, C, H, W, 1, 2), y(N, C, H, W, 0, 1), dy(N, C, H, W, 2, 2), dx(N, C, H, W, 1, 1);
  std::vector<T> gamma(C), beta(C), rm(C), rv(C), mean(C), invstd(C), dgamma(C, T(0.5)), dbeta(C, T(-0.5));
  for (int c = 0; c < C; ++c) gamma[c] = T(1 + 0.1 * c), beta[c] = T(0.05 * c), rm[c] = T(0.1 * c), rv[c] = T(1 + 0.2 * c);
  for (int n = 0, i = 0; n < N; ++n)
    for (int c = 0; c < C; ++c)
      for (int yy = 0; yy < H; ++yy)
        for (int xx = 0; xx < W; ++xx, ++i) {
          x.v.at(n, c, yy, xx) = T(std::sin(1.3 * i) + 0.1 * c);
          dy.v.at(n, c, yy, xx) = T(std::cos(0.7 * i));
          dx.v.at(n, c, yy, xx) = T(0.125 * (i % 3));
        }
  tr::batchnorm_train<T>(x.cv(), gamma.data(), beta.data(), y.v, mean.data(), invstd.data(), rm.data(), rv.data(), 0.03,
                         1e-3);
  tr::batchnorm_backward<T>(x.cv(), gamma.data(), mean.data(), invstd.data(), dy.cv(), dx.v, dgamma.data(), dbeta.data());
  REQUIRE(y.outside_intact());
  REQUIRE(dx.outside_intact());
  for (std::size_t i = 0; i < y.el.size(); ++i) {
    INFO("element " << i);
    REQUIRE(std::abs(double(*y.el[i]) - torch_ref::bn_y[i]) <= tol);
    REQUIRE(std::abs(double(*dx.el[i]) - (0.125 * (i % 3) + torch_ref::bn_dx[i])) <= tol);
  }
  for (int c = 0; c < C; ++c) {
    REQUIRE(std::abs(double(dgamma[c]) - (0.5 + torch_ref::bn_dgamma[c])) <= tol);
    REQUIRE(std::abs(double(dbeta[c]) - (-0.5 + torch_ref::bn_dbeta[c])) <= tol);
    REQUIRE(std::abs(double(rm[c]) - torch_ref::bn_rm[c]) <= tol);
    REQUIRE(std::abs(double(rv[c]) - torch_ref::bn_rv[c]) <= tol);
  }
  tr::batchnorm_eval<T>(x.cv(), gamma.data(), beta.data(), rm.data(), rv.data(), 1e-3, y.v);
  REQUIRE(y.outside_intact());
  for (std::size_t i = 0; i < y.el.size(); ++i) REQUIRE(std::abs(double(*y.el[i]) - torch_ref::bn_y_eval[i]) <= tol);
}
}  // namespace

TEST_CASE("train ops: batchnorm train step, backward, running statistics and eval equal PyTorch", "[train][ops]") {
  check_batchnorm_torch<double>(1e-12);
  check_batchnorm_torch<float>(2e-5);
}

// ------------------------------------------------------------------------------------------------
// Forward values and API rules
// ------------------------------------------------------------------------------------------------

TEST_CASE("train ops: batchnorm running statistics use the unbiased variance", "[train][ops]") {
  std::mt19937_64 g(3);
  std::uniform_real_distribution<double> u(-1, 3);
  const int N = 2, C = 4, H = 3, W = 2;
  sbuf<double> x(N, C, H, W, 1, 1), y(N, C, H, W, 0, 0);
  for (double* p : x.el) *p = u(g);
  std::vector<double> rm(C), rv(C), rm0(C), rv0(C), mean(C), invstd(C);
  for (int c = 0; c < C; ++c) rm[c] = rm0[c] = 0.3 * c - 0.2, rv[c] = rv0[c] = 0.5 + c;
  const double mom = 0.1, eps = 1e-5;
  tr::batchnorm_train<double>(x.cv(), nullptr, nullptr, y.v, mean.data(), invstd.data(), rm.data(), rv.data(), mom, eps);
  const double M = N * H * W;
  for (int c = 0; c < C; ++c) {
    double s = 0, ss = 0;
    for (int n = 0; n < N; ++n)
      for (int i = 0; i < H * W; ++i) s += x.v.channel(n, c)[i];
    const double m = s / M;
    for (int n = 0; n < N; ++n)
      for (int i = 0; i < H * W; ++i) ss += (x.v.channel(n, c)[i] - m) * (x.v.channel(n, c)[i] - m);
    REQUIRE(mean[c] == Approx(m).epsilon(1e-14));
    REQUIRE(invstd[c] == Approx(1 / std::sqrt(ss / M + eps)).epsilon(1e-14));
    REQUIRE(rm[c] == Approx((1 - mom) * rm0[c] + mom * m).epsilon(1e-14));
    REQUIRE(rv[c] == Approx((1 - mom) * rv0[c] + mom * ss / (M - 1)).epsilon(1e-14));
    // null gamma / beta: plain normalisation
    for (int n = 0; n < N; ++n)
      for (int i = 0; i < H * W; ++i)
        REQUIRE(y.v.channel(n, c)[i] == Approx((x.v.channel(n, c)[i] - m) * invstd[c]).epsilon(1e-12).margin(1e-14));
  }
}

TEST_CASE("train ops: conv2d forward equals kernels<reference>::conv2d", "[train][ops]") {
  std::mt19937 g(5);
  std::uniform_real_distribution<float> u(-1, 1);
  context<reference> rc(1);
  struct cas { int n, cin, cout, h, w, k, s, p, g; };
  for (const cas cs : {cas{2, 3, 8, 9, 7, 3, 1, 1, 1}, cas{2, 6, 6, 8, 11, 3, 2, 1, 6}, cas{1, 8, 4, 5, 6, 1, 1, 0, 2},
                       cas{2, 4, 6, 7, 7, 3, 2, 0, 2}}) {
    const conv_desc d{cs.cin, cs.cout, cs.k, cs.s, cs.p, cs.g, act::silu /* ignored by train::ref */};
    conv_desc dn = d;
    dn.activation = act::none;
    tensor<float> x({cs.n, cs.cin, cs.h, cs.w}), yr({cs.n, cs.cout, d.out_h(cs.h), d.out_w(cs.w)});
    std::vector<float> w(std::size_t(d.weight_numel())), b(std::size_t(cs.cout));
    for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = u(g);
    for (auto& v : w) v = u(g);
    for (auto& v : b) v = u(g);
    kernels<reference>::conv2d(rc, x.cv(), {w.data(), b.data()}, yr.v(), dn);
    sbuf<float> y(cs.n, cs.cout, yr.shape().h, yr.shape().w, 1, 2);
    tr::conv2d<float>(x.cv(), w.data(), b.data(), y.v, d);
    REQUIRE(y.outside_intact());
    for (std::size_t i = 0; i < y.el.size(); ++i) REQUIRE(*y.el[i] == yr[std::int64_t(i)]);
  }
}

TEST_CASE("train ops: psa_attention forward equals kernels<reference>::psa_attention", "[train][ops]") {
  std::mt19937 g(9);
  std::uniform_real_distribution<float> u(-2, 2);
  context<reference> rc(1);
  const int n = 2, heads = 2, kd = 4, hd = 8, H = 5, W = 4;
  tensor<float> qkv({n, heads * (2 * kd + hd), H, W}), yr({n, heads * hd, H, W});
  for (std::int64_t i = 0; i < qkv.numel(); ++i) qkv[i] = u(g);
  const float scale = 1.0f / std::sqrt(float(kd));
  kernels<reference>::psa_attention(rc, qkv.cv(), yr.v(), heads, kd, hd, scale);
  sbuf<float> y(n, heads * hd, H, W, 0, 3);
  tr::psa_attention<float>(qkv.cv(), y.v, heads, kd, hd, scale);
  REQUIRE(y.outside_intact());
  for (std::size_t i = 0; i < y.el.size(); ++i) REQUIRE(*y.el[i] == Approx(yr[std::int64_t(i)]).epsilon(1e-6).margin(1e-7));
}

TEST_CASE("train ops: silu and avgpool forward values", "[train][ops]") {
  sbuf<double> u(1, 1, 1, 5, 0, 0), y(1, 1, 1, 5, 0, 0);
  const double in[] = {-40.0, -1.5, 0.0, 0.7, 30.0};
  for (int i = 0; i < 5; ++i) *u.el[std::size_t(i)] = in[i];
  tr::silu<double>(u.cv(), y.v);
  for (int i = 0; i < 5; ++i) REQUIRE(*y.el[std::size_t(i)] == Approx(in[i] / (1 + std::exp(-in[i]))).epsilon(1e-15).margin(1e-300));
  context<reference> rc(1);
  tensor<float> x({2, 3, 6, 5}), yr({2, 3, 5, 4});
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = float(std::cos(0.9 * double(i)));
  kernels<reference>::avgpool2x2s1(rc, x.cv(), yr.v());
  sbuf<float> ya(2, 3, 5, 4, 1, 1);
  tr::avgpool2x2s1<float>(x.cv(), ya.v);
  for (std::size_t i = 0; i < ya.el.size(); ++i) REQUIRE(*ya.el[i] == Approx(yr[std::int64_t(i)]).epsilon(1e-6));
}

namespace {
template <class T>
void check_add_into() {
  sbuf<T> x(2, 3, 4, 5, 1, 1), y(2, 3, 4, 5, 2, 3);
  for (std::size_t i = 0; i < x.el.size(); ++i) *x.el[i] = T(0.5 * double(i)), *y.el[i] = T(-2.0 * double(i) + 1);
  tr::add_into<T>(x.cv(), y.v);
  REQUIRE(y.outside_intact());
  REQUIRE(x.outside_intact());
  for (std::size_t i = 0; i < y.el.size(); ++i) REQUIRE(double(*y.el[i]) == -1.5 * double(i) + 1);
}
}  // namespace

TEST_CASE("train ops: add_into accumulates into channel slices", "[train][ops]") {
  check_add_into<double>();
  check_add_into<float>();
}

TEST_CASE("train ops: null gradient outputs are skipped", "[train][ops]") {
  std::mt19937_64 g(11);
  std::uniform_real_distribution<double> u(-1, 1);
  const conv_desc d{4, 6, 3, 2, 1, 2};
  sbuf<double> x(2, 4, 7, 6, 0, 0), dy(2, 6, d.out_h(7), d.out_w(6), 0, 0), dx1(2, 4, 7, 6, 0, 0), dx2(2, 4, 7, 6, 0, 0);
  std::vector<double> w(std::size_t(d.weight_numel())), dw1(w.size(), 0.0), dw2(w.size(), 0.0), db(6, 0.0);
  for (double* p : x.el) *p = u(g);
  for (double* p : dy.el) *p = u(g);
  for (auto& v : w) v = u(g);
  // all outputs
  tr::conv2d_backward<double>(x.cv(), w.data(), dy.cv(), d, dx1.v, dw1.data(), db.data());
  // each alone
  tr::conv2d_backward<double>(x.cv(), w.data(), dy.cv(), d, dx2.v, nullptr, nullptr);
  tr::conv2d_backward<double>(x.cv(), w.data(), dy.cv(), d, view<double>{}, dw2.data(), nullptr);
  REQUIRE(values(dx1) == values(dx2));
  REQUIRE(dw1 == dw2);
  // batchnorm: dx only, then dgamma/dbeta only
  sbuf<double> y(2, 4, 7, 6, 0, 0), bdy(2, 4, 7, 6, 0, 0), bdx1(2, 4, 7, 6, 0, 0), bdx2(2, 4, 7, 6, 0, 0);
  for (double* p : bdy.el) *p = u(g);
  std::vector<double> gamma{1.1, 0.9, 1.3, 0.7}, beta{0.1, 0.2, -0.1, 0}, mean(4), invstd(4), dg1(4), db1(4), dg2(4), db2(4);
  tr::batchnorm_train<double>(x.cv(), gamma.data(), beta.data(), y.v, mean.data(), invstd.data(), nullptr, nullptr, 0.1, 1e-5);
  tr::batchnorm_backward<double>(x.cv(), gamma.data(), mean.data(), invstd.data(), bdy.cv(), bdx1.v, dg1.data(), db1.data());
  tr::batchnorm_backward<double>(x.cv(), gamma.data(), mean.data(), invstd.data(), bdy.cv(), bdx2.v, nullptr, nullptr);
  tr::batchnorm_backward<double>(x.cv(), gamma.data(), mean.data(), invstd.data(), bdy.cv(), view<double>{}, dg2.data(),
                                 db2.data());
  REQUIRE(values(bdx1) == values(bdx2));
  REQUIRE(dg1 == dg2);
  REQUIRE(db1 == db2);
  // the rest: an empty dx view is a no-op
  tr::silu_backward<double>(x.cv(), x.cv(), view<double>{});
  tr::maxpool2d_backward<double>(x.cv(), dy.cv().slice(0, 4), 3, 2, 1, view<double>{});
  tr::avgpool2x2s1_backward<double>(x.cv(), view<double>{});
  tr::resize_nearest_backward<double>(x.cv(), view<double>{});
  tr::psa_attention_backward<double>(x.cv(), x.cv(), 1, 1, 2, 1.0, view<double>{});
  tr::add_into<double>(x.cv(), view<double>{});
}

TEST_CASE("train ops: maxpool2d NaN and all -inf windows route like PyTorch", "[train][ops]") {
  // PyTorch 1.13: max_pool2d(x, (2,3), 1, 0) of [[1, nan, 3], [nan, 2, 0]] -> nan, index 3 (the last
  // NaN); max_pool2d(full((3,3), -inf), 3, 1, 1) indices [[0,0,1],[0,0,1],[3,3,4]] (the window's first
  // in-bounds element).
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  // a 2x3 window needs k = 3 with a row of -inf below: use k3 s1 p0 on a 3x3 input whose last row is -inf
  sbuf<double> x(1, 1, 3, 3, 0, 0), y(1, 1, 1, 1, 0, 0), dy(1, 1, 1, 1, 0, 0), dx(1, 1, 3, 3, 0, 0);
  const double xv[] = {1, nan, 3, nan, 2, 0, -inf, -inf, -inf};
  for (int i = 0; i < 9; ++i) *x.el[std::size_t(i)] = xv[i], *dx.el[std::size_t(i)] = 0;
  *dy.el[0] = 1;
  tr::maxpool2d<double>(x.cv(), y.v, 3, 1, 0);
  REQUIRE(std::isnan(*y.el[0]));
  tr::maxpool2d_backward<double>(x.cv(), dy.cv(), 3, 1, 0, dx.v);
  for (int i = 0; i < 9; ++i) REQUIRE(*dx.el[std::size_t(i)] == (i == 3 ? 1.0 : 0.0));

  sbuf<double> xi(1, 1, 3, 3, 0, 0), yi(1, 1, 3, 3, 0, 0), dyi(1, 1, 3, 3, 0, 0), dxi(1, 1, 3, 3, 0, 0);
  for (int i = 0; i < 9; ++i) *xi.el[std::size_t(i)] = -inf, *dyi.el[std::size_t(i)] = double(1 << i), *dxi.el[std::size_t(i)] = 0;
  tr::maxpool2d<double>(xi.cv(), yi.v, 3, 1, 1);
  tr::maxpool2d_backward<double>(xi.cv(), dyi.cv(), 3, 1, 1, dxi.v);
  const int torch_idx[] = {0, 0, 1, 0, 0, 1, 3, 3, 4};
  std::vector<double> expect(9, 0.0);
  for (int o = 0; o < 9; ++o) expect[std::size_t(torch_idx[o])] += double(1 << o);
  for (int i = 0; i < 9; ++i) REQUIRE(*dxi.el[std::size_t(i)] == expect[std::size_t(i)]);
}

}  // namespace test_train_ops
