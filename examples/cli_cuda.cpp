// The CLI's CUDA commands (built when gyolo::cuda exists): `gyolo bench --device cuda:N --tasks vision`.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <optional>
#include <random>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_commands.hpp"
#include "gyolo/cuda.hpp"
#include "gyolo/model/model.hpp"
#include "gyolo/pipeline.hpp"

using namespace gyolo;

int bench_cuda(const cuda_bench_request& r) {
  using clock = std::chrono::steady_clock;
  cudart::require_device(r.device);
  cuda_load_device() = r.device;
  vision_graph<cuda> vg;
  const auto t_load = clock::now();
  if (r.weights == "random") {
    random_weights ws(0);
    vg.load(ws, gyolo_c::value, false);
  } else {
    // model::load checks the file (format, variant, checksum); the CUDA graph then reads its tensors
    (void)model<cpu, gyolo_c>::load(r.weights, {.caption = false});
    const gguf::file f(r.weights);
    gguf_weights ws(f);
    vg.load(ws, gyolo_c::value, false);
  }
  const double load_ms = std::chrono::duration<double, std::milli>(clock::now() - t_load).count();
  context<cuda> ctx(r.device);
  tensor<float> x({r.batch, 3, r.height, r.width});
  std::mt19937 g(0);
  std::uniform_real_distribution<float> d(0.f, 1.f);
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = d(g);
  const auto dx = to_device(ctx, x.cv());
  auto one = [&] {
    const auto t0 = clock::now();
    auto out = vg.forward(ctx, dx.cv());
    ctx.synchronize();
    return std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  };
  const double first = one();
  std::vector<double> t;
  for (int i = 0; i < r.runs; ++i) t.push_back(one());
  std::sort(t.begin(), t.end());
  const double med = t.size() % 2 ? t[t.size() / 2] : 0.5 * (t[t.size() / 2 - 1] + t[t.size() / 2]);
  const auto info = cudart::info(r.device);
  nlohmann::ordered_json j;
  j["command"] = "bench";
  j["weights"] = r.weights == "random" ? "random" : r.weights;
  j["input"] = {r.height, r.width};
  j["batch"] = r.batch;
  j["device"] = "cuda:" + std::to_string(r.device);
  j["gpu"] = info.name;
  j["precision"] = "fp32";
  j["runs"] = r.runs;
  j["tasks"] = "vision";
  j["median_ms"] = std::round(med * 100) / 100;
  j["min_ms"] = std::round(t.front() * 100) / 100;
  j["first_ms"] = std::round(first * 100) / 100;
  j["images_per_s"] = std::round(1000.0 * r.batch / med * 10) / 10;
  j["load_ms"] = std::round(load_ms);
  std::cout << j.dump() << std::endl;
  return 0;
}
bool built_with_cuda() { return true; }

namespace {
template <variant V>
std::function<std::vector<image_result>(const std::vector<image_u8>&)> cuda_infer(const cuda_predict_request& r, const gguf::file* f) {
  cudart::require_device(r.device);
  cuda_load_device() = r.device;
  using M = model<cuda, V>;
  struct state {
    context<cuda> ctx;
    std::optional<M> m;
    std::optional<pipeline<cuda, V>> p;
    state(int device, int threads) : ctx(device, threads) {}
  };
  auto st = std::make_shared<state>(r.device, r.host_threads);
  if (f) {
    st->m.emplace(M::load(*f));
  } else {
    random_weights ws(0);
    st->m.emplace(M::from_source(ws));
  }
  st->p.emplace(*st->m, r.options);
  return [st](const std::vector<image_u8>& imgs) { return st->p->run(st->ctx, imgs); };
}
}  // namespace

std::function<std::vector<image_result>(const std::vector<image_u8>&)> make_cuda_infer(const cuda_predict_request& r, const gguf::file* f) {
  if (r.variant == gyolo_c::name) return cuda_infer<gyolo_c>(r, f);
  if (r.variant == gyolo_shapes::name) return cuda_infer<gyolo_shapes>(r, f);
  throw error("--device cuda: no CUDA build of variant '" + r.variant + "'");
}
