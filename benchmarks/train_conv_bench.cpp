// Training convolutions one at a time: GFLOP/s of the forward (kernels<cpu>::conv2d with unpacked
// weights, as train mode runs it), of the weight gradient alone and of the input gradient alone
// (train_kernels<cpu>::conv2d_backward), for the convolution shapes that dominate a 640x640 step.
//   gyolo_train_conv_bench [--threads 2] [--seconds 0.5]
// Prints one JSON line per shape; GYOLO_ISA picks the kernel set.
#include <chrono>
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
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--threads") threads = std::atoi(argv[i + 1]);
    else if (a == "--seconds") seconds = std::atof(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  struct shape {
    int n, cin, h, w, cout, k, s;
  };
  const shape shapes[] = {{2, 64, 160, 160, 64, 3, 1},  {2, 128, 80, 80, 128, 3, 1}, {2, 256, 40, 40, 256, 3, 1},
                          {2, 256, 80, 80, 256, 1, 1},  {2, 128, 160, 160, 64, 1, 1}, {2, 512, 20, 20, 512, 1, 1},
                          {2, 64, 160, 160, 128, 3, 2}};
  context<cpu> ctx(threads);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (const auto& c : shapes) {
    const conv_desc d{c.cin, c.cout, c.k, c.s, c.k / 2, 1, act::none};
    tensor<float> X({c.n, c.cin, c.h, c.w}), DX({c.n, c.cin, c.h, c.w});
    tensor<float> Y({c.n, c.cout, d.out_h(c.h), d.out_w(c.w)}), DY({c.n, c.cout, d.out_h(c.h), d.out_w(c.w)});
    for (std::int64_t i = 0; i < X.numel(); ++i) X[i] = nd(rng);
    for (std::int64_t i = 0; i < DY.numel(); ++i) DY[i] = nd(rng);
    std::vector<float> w(std::size_t(d.weight_numel())), dw(w.size());
    for (auto& v : w) v = nd(rng);
    const double flop = 2.0 * c.cout * c.cin * c.k * c.k * double(DY.numel()) / c.cout;
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
    std::printf(
        "{\"conv\": \"%dx%d %d->%d s%d at %dx%d, batch %d\", \"isa\": \"%s\", \"threads\": %d, \"forward_gflops\": %.1f, "
        "\"dw_gflops\": %.1f, \"dx_gflops\": %.1f}\n",
        c.k, c.k, c.cin, c.cout, c.s, c.h, c.w, c.n, to_string(active_cpu_isa()), threads, fwd, gw, gx);
  }
  return 0;
}
