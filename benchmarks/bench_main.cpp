// Google Benchmark suite: conv kernels on GYOLO's hot shapes (GFLOP/s counters) and the whole
// vision graph at 320 and 640 (random weights: speed does not depend on the values).
//   build/bin/gyolo_bench --benchmark_filter=... [--threads via GYOLO_THREADS, default 2]
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <random>

#include "gyolo/gyolo.hpp"

using namespace gyolo;

namespace {
int threads() {
  const char* t = std::getenv("GYOLO_THREADS");
  return t ? std::atoi(t) : 2;
}

void BM_conv(benchmark::State& st) {
  const int cin = int(st.range(0)), cout = int(st.range(1)), hw = int(st.range(2)), k = int(st.range(3)),
            s = int(st.range(4)), g = int(st.range(5));
  context<cpu> ctx(threads());
  conv_desc d{cin, cout, k, s, k / 2, g, act::silu};
  tensor<float> x(shape4{1, cin, hw, hw});
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = u(rng);
  std::vector<float> w(static_cast<std::size_t>(d.weight_numel())), b(static_cast<std::size_t>(cout));
  for (auto& v : w) v = u(rng);
  for (auto& v : b) v = u(rng);
  tensor<float> y(shape4{1, cout, d.out_h(hw), d.out_w(hw)});
  for (auto _ : st) kernels<cpu>::conv2d(ctx, x.cv(), {w.data(), b.data()}, y.v(), d);
  const double flops = 2.0 * cout * (cin / g) * k * k * double(y.shape().plane());
  st.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
// {cin, cout, hw, k, stride, groups}: shapes from GYOLO at 640x640
BENCHMARK(BM_conv)->Args({64, 128, 320, 3, 2, 1})->Args({64, 64, 160, 3, 1, 1})->Args({256, 256, 80, 3, 1, 1})
    ->Args({512, 512, 40, 1, 1, 1})->Args({1024, 512, 40, 1, 1, 1})->Args({256, 256, 160, 3, 1, 256})
    ->Args({128, 128, 80, 3, 2, 1})->Args({64, 64, 80, 3, 1, 4})->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_vision(benchmark::State& st) {
  const int S = int(st.range(0));
  // GYOLO_WEIGHTS=file.gguf times those weights; otherwise deterministic random ones (the speed
  // does not depend on the values).
  static auto m = [] {
    if (const char* w = std::getenv("GYOLO_WEIGHTS")) return model<cpu, gyolo_c>::load(w);
    random_weights ws(0);
    return model<cpu, gyolo_c>::from_source(ws);
  }();
  context<cpu> ctx(threads());
  tensor<float> x(shape4{1, 3, S, S});
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = float(i % 251) / 251.0f;
  for (auto _ : st) {
    auto o = m.forward(ctx, x.cv());
    benchmark::DoNotOptimize(o.pred.data());
  }
}
BENCHMARK(BM_vision)->Arg(320)->Arg(640)->Unit(benchmark::kMillisecond)->MinTime(3.0)->UseRealTime();
}  // namespace

BENCHMARK_MAIN();
