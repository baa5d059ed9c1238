// One training forward + backward of layers 0-55 (auxiliary branch included, caption head not
// yet): L = sum of every training output of head 55, as benchmarks/train_side_by_side.py does
// with upstream. Prints one JSON line.
//   gyolo_train_bench [--imgsz 640] [--batch 2] [--threads 2] [--runs 3] [--weights FILE.gguf|random]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
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
  std::string weights = "random";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--imgsz") imgsz = std::atoi(v.c_str());
    else if (a == "--batch") batch = std::atoi(v.c_str());
    else if (a == "--threads") threads = std::atoi(v.c_str());
    else if (a == "--runs") runs = std::atoi(v.c_str());
    else if (a == "--weights") weights = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  try {
    vision_graph<cpu, train_mode> g;
    g.init(gyolo_c::value);
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
    for (int r = 0; r < runs; ++r) {
      tp.reset();
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
