// The CUDA kernels' per-element bodies (cuda/include/gyolo/cuda/bodies.cuh), run on the host over
// the same index range a launch covers, against kernels<reference>. No GPU or nvcc needed: this
// checks the kernels' index arithmetic, padding, strides, channel slices and epilogues in CI. The
// tiled convolution's shared-memory staging runs only on a GPU (tests/cuda/test_cuda.cpp); here its
// gather (im2col_at) and epilogue are checked through a host GEMM over the same tiles' elements.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "gyolo/cuda/bodies.cuh"
#include "gyolo/kernels/reference.hpp"
#include "gyolo/kernels/transformer.hpp"
#include "gyolo/post/semantic.hpp"
#include "test_util.hpp"

namespace test_cuda_bodies {

using namespace gyolo;
namespace cb = gyolo::cuda_bodies;

namespace {
using test::rnd;
using test::rndv;
cb::tv tv(view<float> v) { return {v.data, v.n, v.c, v.h, v.w, v.batch_stride}; }
cb::ctv ctv(cview<float> v) { return {v.data, v.n, v.c, v.h, v.w, v.batch_stride}; }
/// max|a - b| over a view's elements <= tol * max|b|
void require_close(cview<float> a, cview<float> b, double tol) {
  REQUIRE(a.shape() == b.shape());
  double md = 0, mr = 0;
  for (int n = 0; n < a.n; ++n)
    for (int c = 0; c < a.c; ++c)
      for (int y = 0; y < a.h; ++y)
        for (int x = 0; x < a.w; ++x) {
          md = std::max(md, double(std::abs(a.at(n, c, y, x) - b.at(n, c, y, x))));
          mr = std::max(mr, double(std::abs(b.at(n, c, y, x))));
        }
  INFO("max|diff| " << md << " max|ref| " << mr);
  REQUIRE(md <= tol * std::max(mr, 1e-30));
}
cb::conv_params params(const conv_desc& d) { return {d.cin, d.cout, d.k, d.stride, d.pad, d.groups, int(d.activation)}; }
}  // namespace

TEST_CASE("CUDA bodies: direct and tiled convolution equal the reference (slices, residual, groups, partial tiles)", "[cuda][kernels]") {
  std::mt19937 g(7);
  context<reference> rc(1);
  struct cas { int n, cin, cout, h, w, k, s, g; act a; bool res; };
  const cas cases[] = {
      {1, 3, 16, 33, 47, 3, 2, 1, act::silu, false},  {2, 16, 24, 17, 9, 1, 1, 1, act::none, false},
      {1, 32, 32, 13, 11, 3, 1, 1, act::silu, true},  {1, 64, 64, 9, 7, 3, 1, 4, act::silu, false},
      {2, 24, 24, 15, 16, 3, 1, 24, act::silu, false}, {1, 24, 24, 15, 16, 3, 2, 24, act::none, true},
      {1, 36, 12, 14, 9, 3, 2, 12, act::none, true},  {1, 8, 70, 37, 29, 3, 1, 1, act::sigmoid, false},
      {1, 40, 8, 1, 1, 3, 1, 1, act::relu, false},    {2, 130, 67, 9, 11, 1, 1, 1, act::silu, true},
  };
  for (const auto& c : cases) {
    const conv_desc d{c.cin, c.cout, c.k, c.s, c.k / 2, c.g, c.a};
    const int oh = d.out_h(c.h), ow = d.out_w(c.w);
    // input and output as channel slices of larger tensors (batch stride != c*h*w)
    auto X = rnd({c.n, c.cin + 5, c.h, c.w}, g);
    const auto x = X.cv().slice(3, c.cin);
    auto w = rndv(std::size_t(d.weight_numel()), g), b = rndv(std::size_t(c.cout), g);
    auto R = rnd({c.n, c.cout, oh, ow}, g);
    const cview<float> res = c.res ? R.cv() : cview<float>{};
    tensor<float> ref({c.n, c.cout, oh, ow});
    kernels<reference>::conv2d(rc, x, conv_weights<>{w.data(), b.data()}, ref.v(), d, res);
    INFO("case n" << c.n << " cin" << c.cin << " cout" << c.cout << " " << c.h << "x" << c.w << " k" << c.k << " s" << c.s << " g" << c.g);

    tensor<float> Y({c.n, c.cout + 4, oh, ow});
    Y.zero();
    const auto y = Y.v().slice(2, c.cout);
    cb::host_for(y.numel(), cb::conv_direct{ctv(x), w.data(), b.data(), tv(y), ctv(res), params(d)});
    require_close(y, ref.cv(), 1e-5);
    // the channels around the slice are untouched
    for (int n = 0; n < c.n; ++n)
      for (int ch : {0, 1, c.cout + 2, c.cout + 3})
        for (std::int64_t i = 0; i < Y.v().plane(); ++i) REQUIRE(Y.v().channel(n, ch)[i] == 0.f);

    // the tiled kernel, block by block, thread by thread, phase by phase (its shared-memory staging),
    // into a channel slice as well
    tensor<float> T({c.n, c.cout + 3, oh, ow});
    T.zero();
    const auto t = T.v().slice(1, c.cout);
    const cb::conv_tile f{ctv(x), w.data(), b.data(), tv(t), ctv(res), params(d)};
    cb::host_tiled(f);
    require_close(t, ref.cv(), 1e-5);
    for (int n = 0; n < c.n; ++n)
      for (int ch : {0, c.cout + 1, c.cout + 2})
        for (std::int64_t i = 0; i < T.v().plane(); ++i) REQUIRE(T.v().channel(n, ch)[i] == 0.f);
    // the tensor-core kernel's staging, tile layout and epilogue (float tiles, the MMA on the host)
    T.zero();
    const cb::conv_tile_tc<float> fh{ctv(x), w.data(), b.data(), tv(t), ctv(res), params(d)};
    cb::host_tiled_tc(fh);
    require_close(t, ref.cv(), 1e-5);
    // and its gather alone: Y[m, p] = sum_r W[m, r] * im2col(r, p)
    tensor<float> G({c.n, c.cout, oh, ow});
    const int cin_g = c.cin / c.g, cout_g = c.cout / c.g, K = cin_g * c.k * c.k, P = oh * ow;
    const auto p = params(d);
    for (int n = 0; n < c.n; ++n)
      for (int gr = 0; gr < c.g; ++gr)
        for (int m = 0; m < cout_g; ++m)
          for (int col = 0; col < P; ++col) {
            const int co = gr * cout_g + m;
            float acc = 0.f;
            for (int r = 0; r < K; ++r) acc += w[std::size_t(co) * K + r] * cb::im2col_at(ctv(x), p, n, gr, r, col, ow);
            G.v().at(n, co, col / ow, col % ow) = cb::conv_epilogue(acc + b[std::size_t(co)], p.act, ctv(res), n, co, col / ow, col % ow);
          }
    require_close(G.cv(), ref.cv(), 1e-5);
  }
}

TEST_CASE("CUDA bodies: pooling, upsampling, copy, add and flatten equal the reference", "[cuda][kernels]") {
  std::mt19937 g(11);
  context<reference> rc(1);
  auto X = rnd({2, 7, 13, 10}, g);
  X[5] = std::nanf("");  // NaN propagates through max pooling
  const auto x = X.cv().slice(1, 5);
  for (auto [k, s, p] : {std::array<int, 3>{5, 1, 2}, {3, 2, 1}}) {
    const int oh = (x.h + 2 * p - k) / s + 1, ow = (x.w + 2 * p - k) / s + 1;
    tensor<float> a({2, 5, oh, ow}), r({2, 5, oh, ow});
    cb::host_for(a.numel(), cb::maxpool{ctv(x), tv(a.v()), k, s, p});
    kernels<reference>::maxpool2d(rc, x, r.v(), k, s, p);
    for (std::int64_t i = 0; i < a.numel(); ++i) REQUIRE((a[i] == r[i] || (std::isnan(a[i]) && std::isnan(r[i]))));
  }
  auto Xf = rnd({2, 7, 13, 10}, g);
  const auto xf = Xf.cv().slice(1, 5);
  {
    tensor<float> a({2, 5, 12, 9}), r({2, 5, 12, 9});
    cb::host_for(a.numel(), cb::avgpool2x2s1{ctv(xf), tv(a.v())});
    kernels<reference>::avgpool2x2s1(rc, xf, r.v());
    require_close(a.cv(), r.cv(), 1e-6);
  }
  {
    tensor<float> a({2, 5, 26, 20}), r({2, 5, 26, 20});
    cb::host_for(a.numel(), cb::upsample2x{ctv(xf), tv(a.v())});
    kernels<reference>::upsample2x(rc, xf, r.v());
    require_close(a.cv(), r.cv(), 0);
  }
  {
    tensor<float> A({2, 9, 13, 10}), r({2, 5, 13, 10});
    A.zero();
    cb::host_for(r.numel(), cb::copy{ctv(xf), tv(A.v().slice(4, 5))});
    kernels<reference>::copy(rc, xf, r.v());
    require_close(A.cv().slice(4, 5), r.cv(), 0);
    auto B = rnd({2, 5, 13, 10}, g);
    tensor<float> s({2, 5, 13, 10}), sr({2, 5, 13, 10});
    cb::host_for(s.numel(), cb::add{ctv(xf), ctv(B.cv()), tv(s.v())});
    kernels<reference>::add(rc, xf, B.cv(), sr.v());
    require_close(s.cv(), sr.cv(), 0);
  }
  {
    // two levels into the anchor axis of a channel slice of [B, 12, 1, A]
    auto L0 = rnd({2, 5, 4, 6}, g), L1 = rnd({2, 5, 2, 3}, g);
    const int A = 4 * 6 + 2 * 3;
    tensor<float> a({2, 12, 1, A}), r({2, 12, 1, A});
    a.zero();
    r.zero();
    cb::host_for(L0.numel(), cb::flatten_into{ctv(L0.cv()), tv(a.v().slice(7, 5)), 0});
    cb::host_for(L1.numel(), cb::flatten_into{ctv(L1.cv()), tv(a.v().slice(7, 5)), 24});
    kernels<reference>::flatten_into(rc, L0.cv(), r.v().slice(7, 5), 0);
    kernels<reference>::flatten_into(rc, L1.cv(), r.v().slice(7, 5), 24);
    require_close(a.cv(), r.cv(), 0);
  }
}

TEST_CASE("CUDA bodies: PSA attention equals the reference", "[cuda][kernels]") {
  std::mt19937 g(3);
  context<reference> rc(1);
  const int heads = 2, kd = 4, hd = 8, blk = 2 * kd + hd;
  auto QKV = rnd({2, heads * blk + 3, 5, 7}, g, -2.f, 2.f);
  const auto qkv = QKV.cv().slice(3, heads * blk);
  tensor<float> a({2, heads * hd, 5, 7}), r({2, heads * hd, 5, 7});
  cb::host_for(std::int64_t(2) * heads * hd * 35, cb::psa_attention{ctv(qkv), tv(a.v()), heads, kd, hd, 0.5f});
  kernels<reference>::psa_attention(rc, qkv, r.v(), heads, kd, hd, 0.5f);
  require_close(a.cv(), r.cv(), 1e-5);
}

TEST_CASE("CUDA bodies: DFL decoding equals the reference over three levels", "[cuda][kernels]") {
  std::mt19937 g(5);
  context<reference> rc(1);
  const int reg = 16, nc = 3, no = 4 * reg + nc;
  auto L0 = rnd({2, no, 8, 6}, g, -4.f, 4.f), L1 = rnd({2, no, 4, 3}, g, -4.f, 4.f), L2 = rnd({2, no, 2, 2}, g, -4.f, 4.f);
  const std::vector<cview<float>> levels{L0.cv(), L1.cv(), L2.cv()};
  const std::vector<float> strides{8, 16, 32};
  std::vector<float> dfl(reg);
  for (int i = 0; i < reg; ++i) dfl[std::size_t(i)] = float(i);
  const int A = 48 + 12 + 4;
  tensor<float> a({2, 4 + nc + 2, 1, A}), r({2, 4 + nc + 2, 1, A});
  a.zero();
  r.zero();
  cb::detect_decode f{};
  f.nl = 3;
  f.reg_max = reg;
  f.nc = nc;
  std::int64_t s = 0;
  for (int l = 0; l < 3; ++l) {
    f.lv[l] = ctv(levels[std::size_t(l)]);
    f.stride[l] = strides[std::size_t(l)];
    f.start[l] = s;
    s += std::int64_t(levels[std::size_t(l)].h) * levels[std::size_t(l)].w;
  }
  f.start[3] = s;
  for (int i = 0; i < reg; ++i) f.dfl[i] = dfl[std::size_t(i)];
  f.pred = tv(a.v().slice(0, 4 + nc));
  cb::host_for(std::int64_t(2) * A, f);
  kernels<reference>::detect_decode(rc, levels, strides, dfl.data(), reg, nc, r.v().slice(0, 4 + nc));
  require_close(a.cv(), r.cv(), 1e-5);
}

namespace {
/// A [rows, cols] matrix of random values inside a wider buffer (row stride cols + 3).
struct rmat {
  int rows, cols;
  std::vector<float> v;
  rmat(int r, int c, std::mt19937& g, float lo = -1.f, float hi = 1.f) : rows(r), cols(c), v(std::size_t(r) * (c + 3)) {
    std::uniform_real_distribution<float> u(lo, hi);
    for (auto& x : v) x = u(g);
  }
  mview m() { return {v.data(), rows, cols, cols + 3}; }
  cmview c() const { return {v.data(), rows, cols, cols + 3}; }
};
cb::mv M(mview m) { return {m.data, m.rows, m.cols, m.ld}; }
cb::cmv C(cmview m) { return {m.data, m.rows, m.cols, m.ld}; }
/// max|a - b| <= tol * max|b| over the matrix elements (not the padding)
void require_close(cmview a, cmview b, double tol) {
  REQUIRE((a.rows == b.rows && a.cols == b.cols));
  double md = 0, mr = 0;
  for (int r = 0; r < a.rows; ++r)
    for (int c = 0; c < a.cols; ++c) {
      md = std::max(md, double(std::abs(a.row(r)[c] - b.row(r)[c])));
      mr = std::max(mr, double(std::abs(b.row(r)[c])));
    }
  INFO("max|diff| " << md << " max|ref| " << mr);
  REQUIRE(md <= tol * std::max(mr, 1e-30));
}
}  // namespace

TEST_CASE("CUDA bodies: the caption head's linear, LayerNorm, gates and log-softmax equal tkernels<reference>", "[cuda][kernels][caption]") {
  std::mt19937 g(11);
  context<reference> rc(1);
  using tr = tkernels<reference>;
  for (const auto& shape : {std::array<int, 3>{5, 32, 40}, {1, 7, 3}, {37, 64, 17}}) {
    const int rows = shape[0], in = shape[1], out = shape[2];  // (clang 14: a lambda cannot capture structured bindings)
    rmat x(rows, in, g), w(out, in, g), b(1, out, g), y(rows, out, g), r(rows, out, g);
    const std::vector<float> wc = [&] {
      std::vector<float> t;
      for (int o = 0; o < out; ++o) t.insert(t.end(), w.c().row(o), w.c().row(o) + in);
      return t;
    }();
    for (act a : {act::none, act::relu, act::sigmoid})
      for (bool bias : {true, false}) {
        const linear_params p{wc.data(), bias ? b.v.data() : nullptr, out, in, nullptr};
        cb::host_for(std::int64_t(rows) * out, cb::linear{C(x.c()), p.w, p.b, M(y.m()), int(a)});
        tr::linear(rc, x.c(), p, r.m(), a);
        require_close(y.c(), r.c(), 1e-5);
      }
  }
  {
    rmat x(9, 48, g, -3.f, 3.f), res(9, 48, g), gm(1, 48, g), bt(1, 48, g), y(9, 48, g), r(9, 48, g);
    cb::host_for(9, cb::add_layernorm{C(x.c()), C(res.c()), gm.v.data(), bt.v.data(), 1e-5f, M(y.m())});
    tr::add_layernorm(rc, x.c(), res.c(), gm.v.data(), bt.v.data(), 1e-5f, r.m());
    require_close(y.c(), r.c(), 1e-6);
    cb::host_for(9, cb::add_layernorm{C(x.c()), {}, gm.v.data(), bt.v.data(), 1e-5f, M(y.m())});
    tr::add_layernorm(rc, x.c(), {}, gm.v.data(), bt.v.data(), 1e-5f, r.m());
    require_close(y.c(), r.c(), 1e-6);
    // in place (y aliases x), as the FFN's LayerNorm runs
    rmat z = x;
    cb::host_for(9, cb::add_layernorm{C(z.c()), C(res.c()), gm.v.data(), bt.v.data(), 1e-5f, M(z.m())});
    tr::add_layernorm(rc, x.c(), res.c(), gm.v.data(), bt.v.data(), 1e-5f, r.m());
    require_close(z.c(), r.c(), 1e-6);
  }
  {
    rmat e1(6, 20, g), a1(6, 20, g), e2(6, 20, g), a2(6, 20, g), y(6, 20, g), r(6, 20, g);
    cb::host_for(6 * 20, cb::gate_mix{C(e1.c()), C(a1.c()), C(e2.c()), C(a2.c()), M(y.m())});
    tr::gate_mix(rc, e1.c(), a1.c(), e2.c(), a2.c(), r.m());
    require_close(y.c(), r.c(), 1e-6);
  }
  {
    rmat x(4, 301, g, -20.f, 20.f), y(4, 301, g), r(4, 301, g);
    cb::host_for(4, cb::log_softmax{C(x.c()), M(y.m())});
    tr::log_softmax(rc, x.c(), r.m());
    require_close(y.c(), r.c(), 1e-6);
  }
}

TEST_CASE("CUDA bodies: the online-softmax attention equals tkernels<reference> (heads, masks, all keys masked)", "[cuda][kernels][caption]") {
  std::mt19937 g(12);
  context<reference> rc(1);
  for (const auto& shape : {std::array<int, 4>{5, 20, 32, 4}, {1, 1, 16, 1}, {7, 130, 64, 2}, {3, 473, 128, 8}}) {
    const int nq = shape[0], nk = shape[1], D = shape[2], heads = shape[3];
    rmat q(nq, D, g, -2.f, 2.f), k(nk, D, g, -2.f, 2.f), v(nk, D, g), y(nq, D, g), r(nq, D, g);
    cb::attention f{C(q.c()), C(k.c()), C(v.c()), heads, attention_divisor(D / heads), M(y.m()), false, {0ull, 0ull}};
    cb::host_for(std::int64_t(nq) * heads, f);
    tkernels<reference>::attention(rc, q.c(), k.c(), v.c(), heads, r.m());
    require_close(y.c(), r.c(), 1e-5);
    if (nk <= 128) {
      for (int all = 0; all < 2; ++all) {
        std::vector<unsigned char> mask(std::size_t(nk), 0);
        for (int j = 0; j < nk; ++j) mask[std::size_t(j)] = all || j % 3 == 1;
        f.masked = true;
        f.mask[0] = f.mask[1] = 0;
        for (int j = 0; j < nk; ++j)
          if (mask[std::size_t(j)]) f.mask[j >> 6] |= 1ull << (j & 63);
        cb::host_for(std::int64_t(nq) * heads, f);
        tkernels<reference>::attention(rc, q.c(), k.c(), v.c(), heads, r.m(), mask.data());
        require_close(y.c(), r.c(), 1e-5);
        if (all)
          for (int i = 0; i < nq; ++i) REQUIRE(y.c().row(i)[0] == 0.f);
      }
    }
  }
}

TEST_CASE("CUDA bodies: the caption head's token movement and selection equal the host ops", "[cuda][kernels][caption]") {
  std::mt19937 g(13);
  context<reference> rc(1);
  using tr = tkernels<reference>;
  SECTION("embedding rows, fill") {
    rmat table(12, 24, g), pos(1, 24, g), y(4, 24, g), r(4, 24, g);
    // a table without padding: rows of exactly d floats
    std::vector<float> tab;
    for (int i = 0; i < 12; ++i) tab.insert(tab.end(), table.c().row(i), table.c().row(i) + 24);
    const std::vector<std::int64_t> ids{3, 0, 11, 3};
    cb::host_for(4 * 24, cb::embed{tab.data(), ids.data(), pos.v.data(), M(y.m())});
    tr::embed(rc, tab.data(), ids, pos.v.data(), r.m());
    require_close(y.c(), r.c(), 0);
    cb::host_for(2 * 24, cb::fill{M(y.m().middle_rows(1, 2)), 0.f});
    tr::fill(rc, r.m().middle_rows(1, 2), 0.f);
    require_close(y.c(), r.c(), 0);
    REQUIRE(y.c().row(2)[5] == 0.f);
  }
  SECTION("gathered columns, columns to token rows (with a row map and as a transpose)") {
    auto X = rnd({2, 9, 5, 7}, g);
    const auto x = X.cv().slice(2, 6);
    const std::vector<std::int64_t> at{34, 0, 17, 17, 5};
    tensor<float> a({1, 6, 1, 5}), r({1, 6, 1, 5});
    cb::host_for(6 * 5, cb::gather_columns{ctv(x), 1, at.data(), 5, a.data()});
    tr::gather_columns(rc, x, 1, at, r.v());
    require_close(a.cv(), r.cv(), 0);
    const std::vector<int> rows{4, 1, 0, 6, 2};
    rmat o1(8, 6, g), o2 = o1;
    cb::host_for(6 * 5, cb::columns_to_rows{a.data(), 5, rows.data(), 1, M(o1.m())});
    tr::columns_to_rows(rc, r.cv(), rows, 1, o2.m());
    require_close(o1.c(), o2.c(), 0);
    REQUIRE(o1.c().row(5)[3] == a.cv().channel(0, 3)[0]);
    auto Y = rnd({1, 6, 3, 4}, g);
    rmat t1(12, 6, g), t2(12, 6, g);
    cb::host_for(6 * 12, cb::columns_to_rows{Y.data(), 12, nullptr, 0, M(t1.m())});
    tr::columns_to_rows(rc, Y.cv(), {}, 0, t2.m());
    require_close(t1.c(), t2.c(), 0);
  }
  SECTION("region scores (NaN propagates as torch.max) and semantic arg-max (first maximum, NaN stops)") {
    const int reg = 2, nc = 3, no = 4 * reg + nc;
    auto L0 = rnd({2, no, 4, 5}, g, -3.f, 3.f), L1 = rnd({2, no, 2, 3}, g, -3.f, 3.f), L2 = rnd({2, no, 1, 2}, g, -3.f, 3.f);
    L0.v().channel(1, 4 * reg + 1)[3] = NAN;
    L1.v().channel(1, 4 * reg + 2)[0] = L1.v().channel(1, 4 * reg + 1)[0] = 5.f;  // a tie
    const std::array<cview<float>, 3> d3{L0.cv(), L1.cv(), L2.cv()};
    cb::region_score f{};
    f.lv[0] = ctv(L0.cv()), f.lv[1] = ctv(L1.cv()), f.lv[2] = ctv(L2.cv());
    f.start[0] = 0, f.start[1] = 20, f.start[2] = 26, f.start[3] = 28;
    f.reg_max = reg;
    f.img = 1;
    std::vector<float> got(28);
    f.score = got.data();
    cb::host_for(28, f);
    const auto want = tr::region_scores(rc, d3, 1, reg);
    REQUIRE(want.size() == got.size());
    for (std::size_t a = 0; a < got.size(); ++a) {
      INFO("anchor " << a);
      if (std::isnan(want[a])) REQUIRE(std::isnan(got[a]));
      else REQUIRE(got[a] == want[a]);
    }
    REQUIRE(std::isnan(got[3]));
    auto S = rnd({2, 4, 6, 5}, g);
    S.v().channel(1, 1)[7] = S.v().channel(1, 1)[20] = 9.f;   // two equal maxima: the first wins
    S.v().channel(1, 2)[4] = NAN;                            // NaN stops the search
    S.v().channel(1, 2)[9] = 9.f;
    std::vector<std::int64_t> pos(4);
    cb::host_for(4, cb::semantic_argmax{ctv(S.cv()), 1, pos.data()});
    REQUIRE(pos == tr::semantic_argmax(rc, S.cv(), 1));
    REQUIRE(pos[1] == 7);
    REQUIRE(pos[2] == 4);
  }
}

TEST_CASE("CUDA bodies: the semantic map equals post::semantic_argmax bit for bit (input and original size, letterboxed)", "[cuda][kernels][semantic]") {
  std::mt19937 g(17);
  struct cas { int C, mh, mw, H, W, top, left, ch, cw, h0, w0; };
  // ch x cw: the crop of the input that holds the image; h0 x w0: the original size
  const cas cases[] = {{7, 16, 24, 64, 96, 8, 0, 48, 96, 37, 75},    // padded rows, shrink
                       {5, 8, 8, 32, 32, 0, 3, 32, 26, 70, 57},      // padded columns, enlarge
                       {12, 10, 6, 40, 24, 0, 0, 40, 24, 40, 24}};   // no letterbox, same size
  for (const auto& c : cases) {
    auto L = rnd({1, c.C, c.mh, c.mw}, g, -4.f, 4.f);
    // exact ties between channels at some pixels: the lower channel must win everywhere
    for (int i = 0; i < c.mh * c.mw; i += 5) L.v().channel(0, 3)[i] = L.v().channel(0, 1)[i];
    letterbox_geometry geo;
    geo.input_h = c.H, geo.input_w = c.W, geo.top = c.top, geo.left = c.left, geo.bottom = c.H - c.top - c.ch,
    geo.right = c.W - c.left - c.cw, geo.orig_h = c.h0, geo.orig_w = c.w0;
    const post::logits_view lv{L.data(), c.C, c.mh, c.mw, std::int64_t(c.mh) * c.mw};
    for (bool want_input : {false, true}) {
      const auto ref = post::semantic_argmax(lv, geo, want_input, true, 2);
      const post::interp_axis ay(c.mh, c.H), ax(c.mw, c.W), uy(c.ch, c.h0), ux(c.cw, c.w0);
      auto A = [](const post::interp_axis& a) { return cb::axis{a.i0.data(), a.i1.data(), a.l0.data(), a.l1.data()}; };
      std::vector<std::int16_t> got(std::size_t(c.h0) * c.w0);
      cb::semantic_map f{L.data(), c.C, c.mw, std::int64_t(c.mh) * c.mw, A(ay), A(ax), true, A(uy), A(ux), c.top, c.left, c.w0, got.data()};
      cb::host_for(std::int64_t(c.h0) * c.w0, f);
      REQUIRE(std::equal(got.begin(), got.end(), ref.original.data()));
      if (want_input) {
        std::vector<std::int16_t> gi(std::size_t(c.H) * c.W);
        f.unletterbox = false, f.out_w = c.W, f.out = gi.data();
        cb::host_for(std::int64_t(c.H) * c.W, f);
        REQUIRE(std::equal(gi.begin(), gi.end(), ref.input.data()));
      }
    }
  }
}

}  // namespace test_cuda_bodies
