// Fast CPU kernels against the naive reference kernels, on random and edge shapes.
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>

#include "gyolo/kernels/cpu.hpp"
#include "gyolo/kernels/reference.hpp"
#include "test_util.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_kernels {

using namespace gyolo;

namespace {
using test::rnd;
using test::rndv;
/// max|a - b| <= tol * max|b|
void require_close(const tensor<float>& a, const tensor<float>& b, double tol) {
  REQUIRE(a.shape() == b.shape());
  double md = 0, mr = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    md = std::max(md, double(std::abs(a[i] - b[i])));
    mr = std::max(mr, double(std::abs(b[i])));
  }
  INFO("max|diff| " << md << " max|ref| " << mr);
  REQUIRE(md <= tol * std::max(mr, 1e-30));
}
}  // namespace

TEST_CASE("conv2d: cpu kernel equals reference on random and edge shapes", "[kernels]") {
  std::mt19937 g(42);
  context<cpu> cc(2);
  context<reference> rc(1);
  struct cas { int n, cin, cout, h, w, k, s, g; act a; bool res; };
  const cas cases[] = {
      {1, 3, 16, 33, 47, 3, 2, 1, act::silu, false},     // stem-like, odd sizes, stride 2
      {2, 16, 24, 17, 9, 1, 1, 1, act::none, false},     // 1x1, batch 2
      {1, 32, 32, 13, 11, 3, 1, 1, act::silu, true},     // 3x3 with residual
      {1, 64, 64, 9, 7, 3, 1, 4, act::silu, false},      // groups 4
      {2, 24, 24, 15, 16, 3, 1, 24, act::silu, false},   // depthwise
      {1, 24, 24, 15, 16, 3, 2, 24, act::none, true},    // depthwise stride 2 + residual
      {2, 24, 12, 15, 16, 3, 1, 12, act::silu, false},   // one output per group (DWConv(2c, c))
      {1, 36, 12, 14, 9, 3, 2, 12, act::none, true},     // three inputs per output, stride 2 + residual
      {1, 64, 16, 5, 3, 1, 1, 4, act::none, false},      // grouped 1x1
      {1, 8, 300, 37, 29, 3, 1, 1, act::sigmoid, false}, // many output channels, many tiles
      {1, 40, 8, 1, 1, 3, 1, 1, act::relu, false},       // 1x1 spatial, 3x3 kernel
      {1, 16, 32, 40, 40, 3, 2, 1, act::silu, false},    // ADown-like
      {1, 600, 13, 7, 5, 3, 1, 1, act::silu, true},      // K = 5400 > K chunk, cout % 6 != 0
      {3, 7, 5, 1, 70, 1, 1, 1, act::none, false},       // pixel tail of 6 after 64
      {1, 48, 64, 20, 20, 1, 1, 4, act::silu, true},     // grouped 1x1 + residual, cout_g = 16
      // wide 3x3 stride 1: odd sizes, batch, channel tails, 1x1 images, many narrow rows
      {2, 48, 70, 9, 13, 3, 1, 1, act::silu, true},
      {1, 40, 36, 1, 1, 3, 1, 1, act::none, false},
      {1, 33, 32, 2, 3, 3, 1, 1, act::sigmoid, true},
      {1, 256, 128, 20, 20, 3, 1, 1, act::silu, false},
      {1, 64, 64, 161, 3, 3, 1, 1, act::silu, true},     // many tile rows, narrow
  };
  for (const auto& c : cases) {
    conv_desc d{c.cin, c.cout, c.k, c.s, c.k / 2, c.g, c.a};
    auto x = rnd({c.n, c.cin, c.h, c.w}, g);
    auto w = rndv(std::size_t(d.weight_numel()), g);
    auto b = rndv(std::size_t(c.cout), g);
    shape4 os{c.n, c.cout, d.out_h(c.h), d.out_w(c.w)};
    auto r = rnd(os, g);
    tensor<float> y1(os), y2(os), y3(os);
    const auto res = c.res ? r.cv() : cview<float>{};
    const auto packed = kernels<cpu>::prepack(d, w);
    kernels<reference>::conv2d(rc, x.cv(), {w.data(), b.data()}, y2.v(), d, res);
    // every kernel set this CPU can run, whichever one the process would pick
    for (cpu_isa isa : available_cpu_isas()) {
      scoped_cpu_isa use(isa);
      INFO("isa " << to_string(isa) << " case cin=" << c.cin << " cout=" << c.cout << " " << c.h << "x" << c.w << " k" << c.k
                  << " s" << c.s << " g" << c.g);
      kernels<cpu>::conv2d(cc, x.cv(), {w.data(), b.data()}, y1.v(), d, res);  // packs on the fly
      kernels<cpu>::conv2d(cc, x.cv(), {w.data(), b.data(), packed.empty() ? nullptr : packed.data()}, y3.v(), d, res);
      require_close(y1, y2, 1e-5);
      require_close(y3, y2, 1e-5);
    }
  }
}

TEST_CASE("CPU kernel sets: detection, choice and errors", "[kernels][isa]") {
  const auto& f = detected_cpu_features();
  INFO("features: " << f.summary() << ", in use: " << cpu_detail::active_kernels().name);
  REQUIRE(!f.arch.empty());
  const auto avail = available_cpu_isas();
  REQUIRE(avail.front() == cpu_isa::portable);  // always built, runs everywhere
  REQUIRE(best_cpu_isa() == avail.back());
  REQUIRE(cpu_isa_available(cpu_isa::avx2) == (f.avx2 && f.fma && f.arch == "x86_64"));
  REQUIRE(cpu_isa_available(cpu_isa::avx512) == (f.avx512f && f.fma && f.arch == "x86_64"));
  for (cpu_isa i : {cpu_isa::portable, cpu_isa::avx2, cpu_isa::avx512}) REQUIRE(parse_cpu_isa(to_string(i)) == i);
  REQUIRE_THROWS_AS(parse_cpu_isa("avx3"), isa_error);
  REQUIRE_THROWS_WITH(parse_cpu_isa("sse\x01"), Catch::Contains("expected portable, avx2, avx512"));
  REQUIRE_THROWS_WITH(parse_cpu_isa(std::string("a\x01" "b")), Catch::Contains("a\\x01b"));  // bytes escaped
  const cpu_isa before = active_cpu_isa();
  for (cpu_isa i : {cpu_isa::avx2, cpu_isa::avx512}) {
    if (cpu_isa_available(i)) {
      scoped_cpu_isa use(i);
      REQUIRE(active_cpu_isa() == i);
    } else {
      REQUIRE_THROWS_AS(set_cpu_isa(i), isa_error);
      REQUIRE_THROWS_WITH(set_cpu_isa(i), Catch::Contains("not available"));
    }
  }
  REQUIRE(active_cpu_isa() == before);  // scoped_cpu_isa restores
  // GYOLO_ISA, when set (CI forces portable), is what the process runs
  if (const char* e = std::getenv("GYOLO_ISA"); e && std::string(e) != "best") REQUIRE(to_string(before) == std::string(e));
}

TEST_CASE("GEMM epilogue per kernel set: exp-based activations against std::exp, NaN and extremes", "[kernels][isa]") {
  std::vector<float> xs;
  for (float v = -100.f; v <= 100.f; v += 0.0371f) xs.push_back(v);
  for (float v : {0.f, -0.f, -88.f, -87.5f, 88.f, 89.f, 1e-30f, -1e-30f}) xs.push_back(v);
  for (cpu_isa isa : available_cpu_isas()) {
    const auto* kt = cpu_detail::isa_table(isa);
    REQUIRE(kt);
    INFO("isa " << kt->name);
    for (act a : {act::silu, act::sigmoid, act::relu}) {
      std::vector<float> y = xs;
      kt->epilogue(y.data(), std::int64_t(y.size()), int(y.size()), 1, nullptr, a, nullptr, 0);
      double worst = 0;
      for (std::size_t i = 0; i < xs.size(); ++i) {
        const double x = xs[i];
        const double r = a == act::silu ? x / (1 + std::exp(-x)) : a == act::sigmoid ? 1 / (1 + std::exp(-x)) : std::max(x, 0.0);
        worst = std::max(worst, std::abs(y[i] - r) / std::max(std::abs(r), 1e-30));
      }
      INFO("activation " << int(a) << " worst relative error " << worst);
      REQUIRE(worst < 2e-6);
    }
    float nan3[3] = {std::nanf(""), 1.f, 2.f};
    kt->epilogue(nan3, 3, 3, 1, nullptr, act::silu, nullptr, 0);
    REQUIRE(std::isnan(nan3[0]));
    REQUIRE(nan3[1] == Approx(1 / (1 + std::exp(-1.0))).epsilon(1e-6));
  }
}

TEST_CASE("conv2d writes into channel slices of a larger tensor", "[kernels]") {
  std::mt19937 g(1);
  context<cpu> cc(2);
  context<reference> rc(1);
  auto big = rnd({2, 20, 11, 13}, g);
  conv_desc d{6, 5, 3, 1, 1, 1, act::silu};
  auto w = rndv(std::size_t(d.weight_numel()), g);
  auto b = rndv(5, g);
  tensor<float> o1({2, 9, 11, 13}), o2({2, 9, 11, 13});
  o1.zero();
  o2.zero();
  kernels<cpu>::conv2d(cc, big.cv().slice(7, 6), {w.data(), b.data()}, o1.v().slice(3, 5), d);
  kernels<reference>::conv2d(rc, big.cv().slice(7, 6), {w.data(), b.data()}, o2.v().slice(3, 5), d);
  require_close(o1, o2, 1e-5);
  for (int n = 0; n < 2; ++n)
    for (int c : {0, 1, 2, 8}) REQUIRE(o1.v().at(n, c, 5, 5) == 0.0f);  // untouched channels
}

TEST_CASE("pooling, upsampling, copy and add kernels equal reference", "[kernels]") {
  std::mt19937 g(7);
  context<cpu> cc(2);
  context<reference> rc(1);
  auto x = rnd({2, 5, 13, 10}, g);
  x.v().at(1, 3, 6, 4) = std::nanf("");  // NaN propagates through max pooling, as in PyTorch
  for (auto [k, s, p] : {std::tuple{3, 2, 1}, std::tuple{5, 1, 2}}) {
    shape4 os{2, 5, (13 + 2 * p - k) / s + 1, (10 + 2 * p - k) / s + 1};
    tensor<float> a(os), b(os);
    kernels<cpu>::maxpool2d(cc, x.cv(), a.v(), k, s, p);
    kernels<reference>::maxpool2d(rc, x.cv(), b.v(), k, s, p);
    int nan_a = 0, nan_b = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) {
      nan_a += std::isnan(a[i]);
      nan_b += std::isnan(b[i]);
      if (std::isnan(a[i]) || std::isnan(b[i])) a[i] = b[i] = 0;  // compare the rest exactly
    }
    CHECK(nan_a > 0);
    CHECK(nan_a == nan_b);
    require_close(a, b, 0);
  }
  {
    tensor<float> a({2, 5, 12, 9}), b({2, 5, 12, 9});
    kernels<cpu>::avgpool2x2s1(cc, x.cv(), a.v());
    kernels<reference>::avgpool2x2s1(rc, x.cv(), b.v());
    require_close(a, b, 0);
    REQUIRE(a.v().at(1, 2, 3, 4) == (x.v().at(1, 2, 3, 4) + x.v().at(1, 2, 3, 5) + x.v().at(1, 2, 4, 4) + x.v().at(1, 2, 4, 5)) / 4.0f);
  }
  {
    tensor<float> a({2, 5, 26, 20}), b({2, 5, 26, 20});
    kernels<cpu>::upsample2x(cc, x.cv(), a.v());
    kernels<reference>::upsample2x(rc, x.cv(), b.v());
    require_close(a, b, 0);
    REQUIRE(a.v().at(1, 3, 25, 19) == x.v().at(1, 3, 12, 9));
  }
  {
    auto y = rnd({2, 5, 13, 10}, g);
    tensor<float> a({2, 5, 13, 10}), b({2, 5, 13, 10});
    kernels<cpu>::add(cc, x.cv(), y.cv(), a.v());
    kernels<reference>::add(rc, x.cv(), y.cv(), b.v());
    require_close(a, b, 0);
  }
}

TEST_CASE("PSA attention kernel equals reference", "[kernels]") {
  std::mt19937 g(3);
  context<cpu> cc(2);
  context<reference> rc(1);
  for (auto [n, heads, kd, hd, h, w] : {std::tuple{1, 1, 32, 64, 4, 5}, std::tuple{2, 4, 32, 64, 7, 9}, std::tuple{1, 2, 8, 16, 20, 20}}) {
    auto qkv = rnd({n, heads * (2 * kd + hd), h, w}, g, -2.f, 2.f);
    tensor<float> a({n, heads * hd, h, w}), b({n, heads * hd, h, w});
    const float scale = float(std::pow(double(kd), -0.5));
    kernels<cpu>::psa_attention(cc, qkv.cv(), a.v(), heads, kd, hd, scale);
    kernels<reference>::psa_attention(rc, qkv.cv(), b.v(), heads, kd, hd, scale);
    require_close(a, b, 1e-5);
  }
}

TEST_CASE("DFL decoding follows dist2bbox and the anchor grid", "[kernels]") {
  // One level 2x3, stride 8: bins with a single large logit give integer distances.
  context<reference> rc(1);
  const int reg = 16, nc = 2;
  tensor<float> m({1, 4 * reg + nc, 2, 3});
  m.zero();
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x)
      for (int side = 0; side < 4; ++side) m.v().at(0, side * reg + (side + 1), y, x) = 100.0f;  // dist = side+1
  m.v().at(0, 4 * reg + 1, 1, 2) = 2.0f;
  std::vector<float> dfl(reg);
  for (int i = 0; i < reg; ++i) dfl[i] = float(i);
  tensor<float> pred({1, 4 + nc, 1, 6});
  kernels<reference>::detect_decode(rc, {m.cv()}, {8.0f}, dfl.data(), reg, nc, pred.v());
  // anchor (2.5, 1.5): x1 = 1.5, y1 = -0.5, x2 = 5.5, y2 = 5.5 -> cx 3.5, cy 2.5, w 4, h 6 (grid) * 8
  const int a = 5;
  CHECK(pred.v().at(0, 0, 0, a) == Approx(28.0).epsilon(1e-6));
  CHECK(pred.v().at(0, 1, 0, a) == Approx(20.0).epsilon(1e-6));
  CHECK(pred.v().at(0, 2, 0, a) == Approx(32.0).epsilon(1e-6));
  CHECK(pred.v().at(0, 3, 0, a) == Approx(48.0).epsilon(1e-6));
  CHECK(pred.v().at(0, 5, 0, a) == Approx(1.0 / (1.0 + std::exp(-2.0))).epsilon(1e-6));
  CHECK(pred.v().at(0, 4, 0, a) == Approx(0.5).epsilon(1e-6));
}

TEST_CASE("training kernels per kernel set: NT GEMM and BatchNorm(+SiLU) planes against double loops", "[kernels][isa]") {
  std::mt19937 g(11);
  for (auto isa : available_cpu_isas()) {
    const auto& kt = *cpu_detail::isa_table(isa);
    INFO("kernel set " << kt.name);
    // C += A * B^T with row strides, sizes not multiples of any tile or chunk (L over 1024)
    for (const auto [m, n, L] : {std::array<int, 3>{1, 1, 1}, {5, 7, 19}, {13, 9, 1500}, {4, 4, 16}, {33, 101, 2100}}) {
      const std::int64_t lda = L + 3, ldb = L + 5, ldc = n + 2;
      auto A = rndv(std::size_t(m * lda), g), B = rndv(std::size_t(n * ldb), g), C = rndv(std::size_t(m * ldc), g);
      auto ref = C;
      for (int i = 0; i < m; ++i)
        for (int j = 0; j < n; ++j) {
          double s = 0;
          for (int t = 0; t < L; ++t) s += double(A[std::size_t(i * lda + t)]) * B[std::size_t(j * ldb + t)];
          ref[std::size_t(i * ldc + j)] = float(ref[std::size_t(i * ldc + j)] + s);
        }
      kt.gemm_nt(A.data(), lda, m, B.data(), ldb, n, L, C.data(), ldc);
      double md = 0;
      for (std::size_t i = 0; i < C.size(); ++i) md = std::max(md, double(std::abs(C[i] - ref[i])));
      INFO("gemm_nt " << m << "x" << n << " L " << L);
      REQUIRE(md <= 1e-5 * std::sqrt(double(L)));  // every entry of C, the ldc padding untouched included
    }
    for (const std::int64_t P : {std::int64_t(1), std::int64_t(15), std::int64_t(16 * 8 + 3), std::int64_t(1000)}) {
      auto x = rndv(std::size_t(P), g), dy = rndv(std::size_t(P), g);
      for (auto& v : x) v = 5.0f + 3.0f * v;
      double s1 = 0.5, s2 = 0.25;  // accumulated into
      kt.bn_sums(x.data(), P, 4.5f, &s1, &s2);
      double r1 = 0.5, r2 = 0.25;
      for (auto v : x) r1 += double(v) - 4.5, r2 += (double(v) - 4.5) * (double(v) - 4.5);
      REQUIRE(std::abs(s1 - r1) <= 1e-6 * (1 + std::abs(r1)));
      REQUIRE(std::abs(s2 - r2) <= 1e-6 * r2);
      const float sc = 0.7f, sh = -3.1f, mu = 4.9f, is = 0.4f;
      for (const act a : {act::none, act::silu}) {
        const auto n = static_cast<std::size_t>(P);
        std::vector<float> y(n), du(n), dz(n, 1.0f);
        kt.bn_act(x.data(), y.data(), P, sc, sh, a);
        double sdu = 0, sdux = 0, rdu = 0, rdux = 0;
        kt.bn_act_bwd(x.data(), dy.data(), du.data(), P, sc, sh, mu, a, &sdu, &sdux);
        kt.bn_dx(x.data(), du.data(), dz.data(), P, mu, is, 1.3f, 0.1f, -0.2f, true);
        for (std::int64_t i = 0; i < P; ++i) {
          const double u = double(x[std::size_t(i)]) * sc + sh, sg = 1.0 / (1.0 + std::exp(-u));
          const double ry = a == act::silu ? u * sg : u;
          const double rd = a == act::silu ? dy[std::size_t(i)] * sg * (1.0 + u * (1.0 - sg)) : dy[std::size_t(i)];
          REQUIRE(std::abs(y[std::size_t(i)] - ry) <= 1e-5 * (1 + std::abs(ry)));
          REQUIRE(std::abs(du[std::size_t(i)] - rd) <= 1e-5 * (1 + std::abs(rd)));
          const double rz = 1.0 + 1.3 * (du[std::size_t(i)] - 0.1 - (double(x[std::size_t(i)]) - mu) * is * -0.2);
          REQUIRE(std::abs(dz[std::size_t(i)] - rz) <= 1e-5 * (1 + std::abs(rz)));
          rdu += du[std::size_t(i)];
          rdux += double(du[std::size_t(i)]) * (double(x[std::size_t(i)]) - mu);
        }
        REQUIRE(std::abs(sdu - rdu) <= 1e-5 * (1 + std::abs(rdu)));
        REQUIRE(std::abs(sdux - rdux) <= 1e-5 * (1 + std::abs(rdux)));
      }
    }
  }
}

}  // namespace test_kernels
