// Google Benchmark suite.
//  - layer/<isa>/...: every distinct convolution of the real model (gyolo.yaml) at 640x640, as the
//    vision graph runs it (found by a profiled forward pass), once per CPU kernel set this machine
//    can run: GFLOP/s counter, the layers it occurs in, and the share of the graph's FLOPs its
//    occurrences make up. Plus PSA attention at its 640 shape.
//  - vision/<size>: the whole vision graph (kernels of GYOLO_ISA, else the best).
//   build/bin/gyolo_bench [--benchmark_filter=layer/avx2/] [GYOLO_THREADS=2] [GYOLO_WEIGHTS=file.gguf]
// Random weights: the speed does not depend on the values.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <tuple>

#include "gyolo/gyolo.hpp"

using namespace gyolo;

namespace {
int threads() {
  const char* t = std::getenv("GYOLO_THREADS");
  return t ? std::atoi(t) : 2;
}

const model<cpu, gyolo_c>& the_model() {
  static const auto m = [] {
    if (const char* w = std::getenv("GYOLO_WEIGHTS")) return model<cpu, gyolo_c>::load(w);
    random_weights ws(0);
    return model<cpu, gyolo_c>::from_source(ws);
  }();
  return m;
}

tensor<float> random_tensor(shape4 s, unsigned seed) {
  tensor<float> t(s);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1, 1);
  for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = u(rng);
  return t;
}

using conv_call = layer_profiler::conv_call;

void run_conv(benchmark::State& st, cpu_isa isa, conv_call c, double share, std::string layers) {
  scoped_cpu_isa use(isa);
  context<cpu> ctx(threads());
  conv_desc d{c.cin, c.cout, c.k, c.stride, c.pad, c.groups, act(c.activation)};
  auto x = random_tensor({c.n, c.cin, c.h, c.w}, 1);
  std::vector<float> w(static_cast<std::size_t>(d.weight_numel())), b(static_cast<std::size_t>(c.cout));
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(-0.1f, 0.1f);
  for (auto& v : w) v = u(rng);
  for (auto& v : b) v = u(rng);
  const auto packed = kernels<cpu>::prepack(d, w);
  tensor<float> y(shape4{c.n, c.cout, d.out_h(c.h), d.out_w(c.w)});
  tensor<float> r = c.residual ? random_tensor(y.shape(), 3) : tensor<float>();
  for (auto _ : st)
    kernels<cpu>::conv2d(ctx, x.cv(), {w.data(), b.data(), packed.empty() ? nullptr : packed.data()}, y.v(), d,
                         c.residual ? r.cv() : cview<float>{});
  const double flops = 2.0 * c.n * c.cout * (c.cin / c.groups) * c.k * c.k * double(y.shape().plane());
  st.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["graph_flop_share"] = share;
  st.SetLabel("layers " + layers);
}

void run_psa(benchmark::State& st, cpu_isa isa) {
  scoped_cpu_isa use(isa);
  context<cpu> ctx(threads());
  // layer 11 (PSA) at 640: 20x20 tokens; gyolo.yaml's PSA: c = 256, heads 4, key dim 32, head dim 64
  const int heads = 4, kd = 32, hd = 64, hw = 20;
  auto qkv = random_tensor({1, heads * (2 * kd + hd), hw, hw}, 4);
  tensor<float> y(shape4{1, heads * hd, hw, hw});
  for (auto _ : st) kernels<cpu>::psa_attention(ctx, qkv.cv(), y.v(), heads, kd, hd, 1.0f / std::sqrt(float(kd)));
  const double flops = 2.0 * heads * double(hw * hw) * (hw * hw) * (kd + hd);
  st.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_vision(benchmark::State& st) {
  const int S = int(st.range(0));
  const auto& m = the_model();
  context<cpu> ctx(threads());
  tensor<float> x(shape4{1, 3, S, S});
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = float(i % 251) / 251.0f;
  for (auto _ : st) {
    auto o = m.forward(ctx, x.cv());
    benchmark::DoNotOptimize(o.pred.data());
  }
}
BENCHMARK(BM_vision)->Name("vision")->Arg(320)->Arg(640)->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseRealTime();

/// Registers one case per distinct convolution of a 640x640 forward pass, per kernel set.
void register_layers() {
  layer_profiler prof;
  prof.record_convs = true;
  context<cpu> ctx(1);
  ctx.set_profiler(&prof);
  tensor<float> x(shape4{1, 3, 640, 640});
  x.zero();
  (void)the_model().forward(ctx, x.cv());
  using key_t = std::tuple<int, int, int, int, int, int, int, int, int, int, bool>;
  std::map<key_t, std::pair<conv_call, std::pair<double, std::string>>> distinct;
  double total = 0;
  for (const auto& c : prof.convs) {
    const key_t k{c.n, c.cin, c.h, c.w, c.cout, c.k, c.stride, c.pad, c.groups, c.activation, c.residual};
    const double f = 2.0 * c.cout * (c.cin / c.groups) * c.k * c.k * double((c.h + 2 * c.pad - c.k) / c.stride + 1) *
                     double((c.w + 2 * c.pad - c.k) / c.stride + 1);
    total += f;
    auto& e = distinct[k];
    e.first = c;
    e.second.first += f;
    auto& ls = e.second.second;  // the layers it occurs in, each once
    if (("," + ls + ",").find("," + c.layer + ",") == std::string::npos) ls += (ls.empty() ? "" : ",") + c.layer;
  }
  for (cpu_isa isa : available_cpu_isas())
    for (const auto& [k, e] : distinct) {
      const auto& c = e.first;
      const std::string name = std::string("layer/") + to_string(isa) + "/" + (c.groups == c.cin && c.groups > 1 ? "dw" : "conv") +
                               std::to_string(c.k) + "x" + std::to_string(c.k) + "s" + std::to_string(c.stride) + "g" +
                               std::to_string(c.groups) + "/" + std::to_string(c.cin) + "->" + std::to_string(c.cout) + "@" +
                               std::to_string(c.h) + "x" + std::to_string(c.w) +
                               (c.activation == int(act::silu) ? "" : c.activation == int(act::none) ? "/linear" : "/act" + std::to_string(c.activation)) +
                               (c.pad == c.k / 2 ? "" : "/pad" + std::to_string(c.pad)) + (c.residual ? "+res" : "");
      benchmark::RegisterBenchmark(name.c_str(), run_conv, isa, c, e.second.first / total, e.second.second)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  for (cpu_isa isa : available_cpu_isas())
    benchmark::RegisterBenchmark((std::string("layer/") + to_string(isa) + "/psa_attention/20x20").c_str(), run_psa, isa)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
}
}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_layers();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
