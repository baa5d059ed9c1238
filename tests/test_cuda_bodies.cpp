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

}  // namespace test_cuda_bodies
