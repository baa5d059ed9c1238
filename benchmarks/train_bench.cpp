// One training forward + backward of layers 0-55 (auxiliary branch included, caption head not
// yet): L = sum of every training output of head 55, as benchmarks/train_side_by_side.py does
// with upstream. Prints one JSON line.
//   gyolo_train_bench [--imgsz 640] [--batch 2] [--threads 2] [--runs 3] [--weights FILE.gguf|random] [--per-layer]
//                     [--variant gyolo|tiny]
// --per-layer: the last step's forward and backward time per gyolo.yaml layer, a table on stderr.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "gyolo/gyolo.hpp"
#include "gyolo/nn/module.hpp"

namespace {
double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string k;
  while (f >> k)
    if (k == "VmHWM:") {
      double kb = 0;
      f >> kb;
      return kb / 1024.0;
    }
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  using namespace gyolo;
  int imgsz = 640, batch = 2, threads = 2, runs = 3;
  std::string weights = "random", variant = "gyolo";
  bool per_layer = false;
  for (int i = 1; i < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--per-layer") {
      per_layer = true;
      --i;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "option %s needs a value\n", a.c_str());
      return 2;
    }
    const std::string v = argv[i + 1];
    if (a == "--imgsz") imgsz = std::atoi(v.c_str());
    else if (a == "--batch") batch = std::atoi(v.c_str());
    else if (a == "--threads") threads = std::atoi(v.c_str());
    else if (a == "--runs") runs = std::atoi(v.c_str());
    else if (a == "--weights") weights = v;
    else if (a == "--variant") variant = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    vision_graph<cpu, train_mode> g;
    g.init(variant == "tiny" ? gyolo_tiny::value : gyolo_c::value);
    if (weights == "random") {
      random_weights rw(1);
      nn::load_tensors(g, rw, "model");
    } else {
      gguf::file f(weights);
      gguf_weights ws(f);
      nn::load_tensors(g, ws, "model");
    }
    context<cpu> ctx(threads);
    tape<cpu> tp(ctx);
    tensor<float> x({batch, 3, imgsz, imgsz});
    for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = float((i * 7919) % 1000) / 1000.0f;
    std::vector<double> fwd, bwd;
    layer_profiler prof;
    for (int r = 0; r < runs; ++r) {
      tp.reset();
      if (per_layer && r == runs - 1) {
        tp.set_profiler(&prof);   // layer marks, forward and backward times
        ctx.set_profiler(&prof);  // the forward convolutions' FLOPs
      }
      nn::zero_grad(g);
      const auto t0 = std::chrono::steady_clock::now();
      auto in = tp.input(x.cv(), false);
      auto o = g.forward(tp, in.t);
      const auto t1 = std::chrono::steady_clock::now();
      auto seed = [](const tvar& v) { std::fill(v.t.gdata, v.t.gdata + v.numel(), 1.0f); };
      for (auto& d : o.head.d)
        for (auto& l : d) seed(l);
      for (int k = 0; k < 2; ++k) {
        seed(o.head.mc[std::size_t(k)]);
        seed(o.head.p[std::size_t(k)]);
        seed(o.head.s[std::size_t(k)]);
      }
      tp.backward();
      const auto t2 = std::chrono::steady_clock::now();
      fwd.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      bwd.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
    }
    if (per_layer) {  // forward and backward ms per layer, in graph order
      struct row {
        std::string layer;
        double fwd_ms = 0, bwd_ms = 0, gflop = 0;
      };
      std::vector<row> t;
      auto find = [&](const std::string& n) -> row& {
        for (auto& e : t)
          if (e.layer == n) return e;
        t.push_back({n});
        return t.back();
      };
      for (auto& r : prof.rows) {
        if (r.layer.rfind("bwd ", 0) == 0) {
          find(r.layer.substr(4)).bwd_ms += r.ms;
        } else {
          auto& e = find(r.layer);
          e.fwd_ms += r.ms;
          e.gflop += r.flop / 1e9;
        }
      }
      // backward GFLOP/s counts dW + dX as twice the forward's convolution FLOPs
      row sum{"total"};
      std::fprintf(stderr, "%-18s %9s %9s %9s %9s %9s\n", "layer", "GFLOP", "fwd ms", "fwd GF/s", "bwd ms", "bwd GF/s");
      for (auto& e : t) {
        if (e.fwd_ms == 0 && e.bwd_ms == 0) continue;
        sum.fwd_ms += e.fwd_ms;
        sum.bwd_ms += e.bwd_ms;
        sum.gflop += e.gflop;
      }
      t.push_back(sum);
      for (auto& e : t)
        if (e.fwd_ms > 0 || e.bwd_ms > 0)
          std::fprintf(stderr, "%-18s %9.1f %9.1f %9.1f %9.1f %9.1f\n", e.layer.c_str(), e.gflop, e.fwd_ms,
                       e.gflop / (e.fwd_ms * 1e-3), e.bwd_ms, 2 * e.gflop / (e.bwd_ms * 1e-3));
    }
    std::vector<double> tot(fwd.size());
    for (std::size_t i = 0; i < fwd.size(); ++i) tot[i] = fwd[i] + bwd[i];
    const double first = tot[0];
    if (runs > 1) {  // the first step allocates the tape: report it apart
      fwd.erase(fwd.begin());
      bwd.erase(bwd.begin());
      tot.erase(tot.begin());
    }
    auto med = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    std::printf(
        "{\"imgsz\": %d, \"batch\": %d, \"threads\": %d, \"runs\": %d, \"isa\": \"%s\", \"forward_ms\": %.1f, \"backward_ms\": %.1f, "
        "\"step_ms\": %.1f, \"first_step_ms\": %.1f, \"tape_mb\": %.1f, \"params\": %lld, \"peak_rss_mb\": %.1f}\n",
        imgsz, batch, threads, runs, to_string(active_cpu_isa()), med(fwd), med(bwd), med(tot), first, double(tp.bytes()) / 1e6,
        (long long)nn::count_params(g), peak_rss_mb());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gyolo_train_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
