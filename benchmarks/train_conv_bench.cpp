// Training convolutions one at a time: GFLOP/s of the forward (kernels<cpu>::conv2d with unpacked
// weights, as train mode runs it), of the weight gradient alone and of the input gradient alone
// (train_kernels<cpu>::conv2d_backward), for the convolution shapes that dominate a 640x640 step.
//   gyolo_train_conv_bench [--threads 2] [--seconds 0.5] [--graph IMGSZ] [--shape n,cin,h,w,cout,k,stride,groups]...
// Prints one JSON line per shape; GYOLO_ISA picks the kernel set. With --graph, the shapes are every
// distinct convolution of a train-mode forward of the whole network (batch 2) at IMGSZ, each with
// its count and the layers it belongs to, and a summary ranks them by time per step (count x
// (forward + dW + dX)).
#include <algorithm>
#include <chrono>
#include <map>
#include <tuple>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "gyolo/gyolo.hpp"

using namespace gyolo;

int main(int argc, char** argv) {
  int threads = 2;
  double seconds = 0.5;
  int graph = 0;
  struct shape {
    int n, cin, h, w, cout, k, s, groups = 1, count = 1;
    std::string layers;
  };
  std::vector<shape> one;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--threads") threads = std::atoi(argv[i + 1]);
    else if (a == "--seconds") seconds = std::atof(argv[i + 1]);
    else if (a == "--graph") graph = std::atoi(argv[i + 1]);
    else if (a == "--shape") {  // n,cin,h,w,cout,k,stride,groups
      one.emplace_back();
      auto& c = one.back();
      if (std::sscanf(argv[i + 1], "%d,%d,%d,%d,%d,%d,%d,%d", &c.n, &c.cin, &c.h, &c.w, &c.cout, &c.k, &c.s, &c.groups) != 8) {
        std::fprintf(stderr, "--shape wants n,cin,h,w,cout,k,stride,groups\n");
        return 2;
      }
    }
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  std::vector<shape> shapes = {{2, 64, 160, 160, 64, 3, 1},  {2, 128, 80, 80, 128, 3, 1}, {2, 256, 40, 40, 256, 3, 1},
                               {2, 256, 80, 80, 256, 1, 1},  {2, 128, 160, 160, 64, 1, 1}, {2, 512, 20, 20, 512, 1, 1},
                               {2, 64, 160, 160, 128, 3, 2}};
  context<cpu> ctx(threads);
  if (!one.empty()) shapes = one;
  if (graph > 0) {  // every distinct convolution of one train-mode forward
    vision_graph<cpu, train_mode> g;
    g.init(gyolo_c::value);
    random_weights rw(1);
    nn::load_tensors(g, rw, "model");
    layer_profiler prof;
    prof.record_convs = true;
    ctx.set_profiler(&prof);
    tape<cpu> tp(ctx);
    tp.set_profiler(&prof);
    tensor<float> x({2, 3, graph, graph});
    for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = float((i * 7919) % 1000) / 1000.0f;
    auto in = tp.input(x.cv(), false);
    (void)g.forward(tp, in.t);
    ctx.set_profiler(nullptr);
    std::map<std::tuple<int, int, int, int, int, int, int, int>, shape> m;
    std::vector<std::tuple<int, int, int, int, int, int, int, int>> order;
    for (auto& c : prof.convs) {
      const auto key = std::make_tuple(c.n, c.cin, c.h, c.w, c.cout, c.k, c.stride, c.groups);
      auto it = m.find(key);
      if (it == m.end()) {
        m[key] = shape{c.n, c.cin, c.h, c.w, c.cout, c.k, c.stride, c.groups, 1, c.layer};
        order.push_back(key);
      } else {
        ++it->second.count;
        if (it->second.layers.size() < 60) it->second.layers += "," + c.layer;
      }
    }
    shapes.clear();
    for (auto& k : order) shapes.push_back(m[k]);
  }
  struct result {
    std::string what;
    double ms;
  };
  std::vector<result> results;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (const auto& c : shapes) {
    const conv_desc d{c.cin, c.cout, c.k, c.s, c.k / 2, c.groups, act::none};
    tensor<float> X({c.n, c.cin, c.h, c.w}), DX({c.n, c.cin, c.h, c.w});
    tensor<float> Y({c.n, c.cout, d.out_h(c.h), d.out_w(c.w)}), DY({c.n, c.cout, d.out_h(c.h), d.out_w(c.w)});
    for (std::int64_t i = 0; i < X.numel(); ++i) X[i] = nd(rng);
    for (std::int64_t i = 0; i < DY.numel(); ++i) DY[i] = nd(rng);
    std::vector<float> w(std::size_t(d.weight_numel())), dw(w.size());
    for (auto& v : w) v = nd(rng);
    const double flop = 2.0 * c.cout * (c.cin / c.groups) * c.k * c.k * double(DY.numel()) / c.cout;
    auto gflops = [&](auto f) {
      f();  // warm-up (workspaces, caches)
      const auto t0 = std::chrono::steady_clock::now();
      int runs = 0;
      double el = 0;
      do {
        f();
        ++runs;
        el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      } while (el < seconds);
      return flop / (el / runs) * 1e-9;
    };
    const double fwd = gflops([&] { kernels<cpu>::conv2d(ctx, X.cv(), conv_weights<>{w.data(), nullptr, nullptr}, Y.v(), d); });
    const double gw = gflops([&] { train_kernels<cpu>::conv2d_backward(ctx, X.cv(), w.data(), DY.cv(), d, view<float>{}, dw.data(), nullptr); });
    const double gx = gflops([&] { train_kernels<cpu>::conv2d_backward(ctx, X.cv(), w.data(), DY.cv(), d, DX.v(), nullptr, nullptr); });
    char name[160];
    std::snprintf(name, sizeof name, "%dx%d %d->%d s%d g%d at %dx%d, batch %d", c.k, c.k, c.cin, c.cout, c.s, c.groups, c.h, c.w, c.n);
    std::printf(
        "{\"conv\": \"%s\", \"count\": %d, \"layers\": \"%s\", \"isa\": \"%s\", \"threads\": %d, \"forward_gflops\": %.1f, "
        "\"dw_gflops\": %.1f, \"dx_gflops\": %.1f}\n",
        name, c.count, c.layers.c_str(), to_string(active_cpu_isa()), threads, fwd, gw, gx);
    std::fflush(stdout);
    results.push_back({name, c.count * flop * 1e-6 * (1 / fwd + 1 / gw + 1 / gx)});
  }
  if (graph > 0) {  // where a step's convolution time goes
    std::sort(results.begin(), results.end(), [](const result& a, const result& b) { return a.ms > b.ms; });
    double total = 0;
    for (auto& r : results) total += r.ms;
    std::fprintf(stderr, "convolution time per step (count x (fwd + dW + dX)): %.0f ms\n", total);
    for (auto& r : results) std::fprintf(stderr, "%8.1f ms  %5.1f %%  %s\n", r.ms, 100 * r.ms / total, r.what.c_str());
  }
  return 0;
}
