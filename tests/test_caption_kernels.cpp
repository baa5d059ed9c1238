// tkernels<cpu> (Eigen/OpenMP) against the naive tkernels<reference> oracle on random inputs, at the
// caption head's shapes (decoder rows, grid tokens, region tokens, vocabulary-sized logits).
#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "gyolo/kernels/transformer.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_caption_kernels {

using namespace gyolo;

namespace {
std::vector<float> randv(std::size_t n, std::uint32_t seed, float scale = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}
double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  double md = 0, mr = 1e-30;
  for (std::size_t i = 0; i < a.size(); ++i) {
    md = std::max(md, double(std::abs(a[i] - b[i])));
    mr = std::max(mr, double(std::abs(b[i])));
  }
  return md / mr;
}
}  // namespace

TEST_CASE("transformer kernels: cpu matches reference", "[caption][kernels]") {
  context<cpu> cc(2);
  context<reference> rc(1);

  SECTION("linear (+bias, activations, strided views)") {
    for (auto [rows, in, out] : {std::tuple{5, 256, 10202}, {1, 128, 100}, {400, 512, 256}, {473, 256, 256}, {7, 512, 256}, {12, 600, 70}, {13, 64, 33}, {10, 256, 1000}}) {
      auto x = randv(std::size_t(rows) * (in + 3), 1);
      auto w = randv(std::size_t(out) * in, 2, 1.f / std::sqrt(float(in)));
      auto b = randv(std::size_t(out), 3, 0.1f);
      const auto pk = tkernels<cpu>::prepack_linear(w, out, in);
      for (act a : {act::none, act::relu, act::sigmoid})
        for (int packed = 0; packed < 2; ++packed)
          for (cpu_isa isa : available_cpu_isas()) {  // the few-row path runs the chosen GEMM
          scoped_cpu_isa use(isa);
          std::vector<float> y1(std::size_t(rows) * out), y2(y1.size());
          const cmview X{x.data(), rows, in, in + 3};
          const linear_params p{w.data(), a == act::none ? nullptr : b.data(), out, in};
          linear_params pc = p;
          if (packed) pc = {nullptr, p.b, out, in, pk.wt.data()};
          tkernels<cpu>::linear(cc, X, pc, as_mat(y1.data(), rows, out), a);
          tkernels<reference>::linear(rc, X, p, as_mat(y2.data(), rows, out), a);
          INFO(rows << "x" << in << " -> " << out << " packed " << packed << " isa " << to_string(isa));
          REQUIRE(max_rel(y1, y2) < 1e-5);
        }
    }
  }
  SECTION("add_layernorm, with and without residual, in place") {
    const int rows = 9, d = 256;
    auto x = randv(std::size_t(rows) * d, 4, 3.f), r = randv(x.size(), 5), g = randv(d, 6), b = randv(d, 7);
    std::vector<float> y1(x.size()), y2(x.size());
    tkernels<cpu>::add_layernorm(cc, as_cmat(x.data(), rows, d), as_cmat(r.data(), rows, d), g.data(), b.data(), 1e-5f, as_mat(y1.data(), rows, d));
    tkernels<reference>::add_layernorm(rc, as_cmat(x.data(), rows, d), as_cmat(r.data(), rows, d), g.data(), b.data(), 1e-5f, as_mat(y2.data(), rows, d));
    REQUIRE(max_rel(y1, y2) < 1e-5);
    y1 = x;
    tkernels<cpu>::add_layernorm(cc, as_cmat(y1.data(), rows, d), {}, g.data(), b.data(), 1e-5f, as_mat(y1.data(), rows, d));
    tkernels<reference>::add_layernorm(rc, as_cmat(x.data(), rows, d), {}, g.data(), b.data(), 1e-5f, as_mat(y2.data(), rows, d));
    REQUIRE(max_rel(y1, y2) < 1e-5);
  }
  SECTION("attention (grid self-attention, beam cross-attention, masked cached self-attention)") {
    for (auto [nq, nk, D, H] : {std::tuple{400, 400, 256, 8}, {5, 473, 256, 8}, {1, 7, 128, 4}, {3, 1, 256, 8}, {70, 90, 64, 2}}) {
      auto q = randv(std::size_t(nq) * D, 8, 2.f), k = randv(std::size_t(nk) * D, 9, 2.f), v = randv(std::size_t(nk) * D, 10);
      std::vector<unsigned char> mask(std::size_t(nk), 0);
      for (int j = 1; j < nk; j += 3) mask[std::size_t(j)] = 1;
      for (bool masked : {false, true}) {
        std::vector<float> y1(std::size_t(nq) * D), y2(y1.size());
        tkernels<cpu>::attention(cc, as_cmat(q.data(), nq, D), as_cmat(k.data(), nk, D), as_cmat(v.data(), nk, D), H,
                                 as_mat(y1.data(), nq, D), masked ? mask.data() : nullptr);
        tkernels<reference>::attention(rc, as_cmat(q.data(), nq, D), as_cmat(k.data(), nk, D), as_cmat(v.data(), nk, D), H,
                                       as_mat(y2.data(), nq, D), masked ? mask.data() : nullptr);
        INFO(nq << " queries, " << nk << " keys, masked " << masked);
        REQUIRE(max_rel(y1, y2) < 1e-5);
      }
    }
  }
  SECTION("a fully masked query row gives zeros") {
    const int D = 8;
    auto q = randv(D, 11), k = randv(2 * D, 12), v = randv(2 * D, 13);
    const unsigned char all[2] = {1, 1};
    std::vector<float> y(D, 1.f);
    tkernels<cpu>::attention(cc, as_cmat(q.data(), 1, D), as_cmat(k.data(), 2, D), as_cmat(v.data(), 2, D), 2, as_mat(y.data(), 1, D), all);
    for (float f : y) REQUIRE(f == 0.f);
  }
  SECTION("gate_mix and log_softmax") {
    const int rows = 5, d = 256, V = 10202;
    auto e1 = randv(std::size_t(rows) * d, 14), a1 = randv(e1.size(), 15), e2 = randv(e1.size(), 16), a2 = randv(e1.size(), 17);
    std::vector<float> y1(e1.size()), y2(e1.size());
    tkernels<cpu>::gate_mix(cc, as_cmat(e1.data(), rows, d), as_cmat(a1.data(), rows, d), as_cmat(e2.data(), rows, d), as_cmat(a2.data(), rows, d), as_mat(y1.data(), rows, d));
    tkernels<reference>::gate_mix(rc, as_cmat(e1.data(), rows, d), as_cmat(a1.data(), rows, d), as_cmat(e2.data(), rows, d), as_cmat(a2.data(), rows, d), as_mat(y2.data(), rows, d));
    REQUIRE(max_rel(y1, y2) < 1e-6);
    auto l = randv(std::size_t(rows) * V, 18, 4.f);
    std::vector<float> s1(l.size()), s2(l.size());
    tkernels<cpu>::log_softmax(cc, as_cmat(l.data(), rows, V), as_mat(s1.data(), rows, V));
    tkernels<reference>::log_softmax(rc, as_cmat(l.data(), rows, V), as_mat(s2.data(), rows, V));
    REQUIRE(max_rel(s1, s2) < 1e-5);
    // all-zero logits: exactly -log(V) everywhere (a PAD row of the decoder)
    std::vector<float> z(std::size_t(V), 0.f);
    tkernels<cpu>::log_softmax(cc, as_cmat(z.data(), 1, V), as_mat(z.data(), 1, V));
    REQUIRE(z[0] == Approx(-std::log(double(V))).epsilon(1e-6));
    REQUIRE(z[V - 1] == z[0]);
  }
}

}  // namespace test_caption_kernels
