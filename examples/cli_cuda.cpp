// The CLI's CUDA commands (built when gyolo::cuda exists): `gyolo bench --device cuda:N --tasks vision`.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>
#include <map>
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
  using M = model<cuda, gyolo_c>;
  cudart::require_device(r.device);
  const auto t_load = clock::now();
  std::optional<M> m;
  if (r.weights == "random") {
    random_weights ws(0);
    m.emplace(M::from_source(ws, {.device = r.device}));
  } else {
    m.emplace(M::load(r.weights, {.device = r.device}));
  }
  const double load_ms = std::chrono::duration<double, std::milli>(clock::now() - t_load).count();
  context<cuda> ctx(r.device, r.host_threads);
  if (r.half) ctx.set_precision(cuda_precision::fp16);
  tensor<float> x({r.batch, 3, r.height, r.width});
  std::mt19937 g(0);
  std::uniform_real_distribution<float> d(0.f, 1.f);
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = d(g);
  const auto dx = to_device(ctx, x.cv());
  // --tasks all: the pipeline on a picture of the input's size (letterboxed to exactly that size)
  image_u8 img(r.height, r.width, 3);
  for (std::size_t i = 0; i < img.data.size(); ++i) img.data[i] = std::uint8_t((i * 7 + i / 3) & 255);
  pipeline_options po;
  po.imgsz = std::max(r.height, r.width);
  pipeline<cuda, gyolo_c> p(*m, po);
  std::vector<image_u8> imgs(std::size_t(r.batch), img);
  std::map<std::string, std::vector<double>> stages;
  auto one = [&] {
    const auto t0 = clock::now();
    if (r.vision_only) {
      auto out = m->forward(ctx, dx.cv());
      ctx.synchronize();
    } else {
      const auto res = p.run(ctx, imgs);
      const auto& t = res.front().timing_ms;
      for (auto [name, v] : {std::pair{"preprocess", t.preprocess}, {"vision", t.vision}, {"detect", t.detect}, {"masks", t.masks},
                             {"semantic", t.semantic}, {"panoptic", t.panoptic}, {"caption", t.caption}})
        stages[name].push_back(v);
    }
    return std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  };
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
  };
  auto round2 = [](double v) { return std::round(v * 100) / 100; };
  const double first = one();
  stages.clear();
  std::vector<double> t;
  for (int i = 0; i < r.runs; ++i) t.push_back(one());
  const double med = median(t);
  const auto info = cudart::info(r.device);
  nlohmann::ordered_json j;
  j["command"] = "bench";
  j["weights"] = r.weights;
  j["input"] = {r.height, r.width};
  j["batch"] = r.batch;
  j["device"] = "cuda:" + std::to_string(r.device);
  j["gpu"] = info.name;
  j["precision"] = r.half ? "fp16 (tensor-core convolutions, fp32 accumulation and storage)" : "fp32";
  j["runs"] = r.runs;
  j["tasks"] = r.vision_only ? "vision" : "all";
  j["host_threads"] = ctx.threads();
  j["median_ms"] = round2(med);
  j["min_ms"] = round2(*std::min_element(t.begin(), t.end()));
  j["first_ms"] = round2(first);
  j["images_per_s"] = std::round(1000.0 * r.batch / med * 10) / 10;
  if (!r.vision_only) {  // per image (the pipeline reports a batch's vision and caption time per image)
    nlohmann::ordered_json st = nlohmann::ordered_json::object();
    for (const char* name : {"preprocess", "vision", "detect", "masks", "semantic", "panoptic", "caption"})
      if (stages.count(name)) st[name] = round2(median(stages[name]));
    j["stages_median_ms"] = st;
  }
  if (r.per_layer) {  // each layer's device time, median over the runs, and its FLOPs
    std::vector<std::string> order;
    std::map<std::string, std::vector<double>> ms;
    std::map<std::string, double> flop;
    for (int i = 0; i < r.runs; ++i) {
      layer_profiler prof;
      ctx.set_profiler(&prof);
      const bool caption = !r.vision_only && m->has_caption();  // --tasks all: the caption head as layer 56
      auto out = m->forward(ctx, dx.cv(), {.caption_features = caption});
      if (caption) {
        ctx.synchronize();
        prof.start();
        auto c = m->caption(ctx, out);
        ctx.synchronize();
        prof.mark("56");
      }
      ctx.set_profiler(nullptr);
      for (const auto& row : prof.rows) {
        if (!ms.count(row.layer)) order.push_back(row.layer);
        ms[row.layer].push_back(row.ms);
        flop[row.layer] = row.flop;
      }
    }
    double sum = 0, total_flop = 0;
    for (const auto& l : order) sum += median(ms[l]), total_flop += flop[l];
    nlohmann::ordered_json layers = nlohmann::ordered_json::array();
    for (const auto& l : order) {
      const double tm = median(ms[l]);
      layers.push_back({{"layer", l}, {"ms", std::round(tm * 1000) / 1000}, {"gflop", std::round(flop[l] * 1e-5) / 1e4},
                        {"gflops", std::round(tm > 0 ? flop[l] * 1e-6 / tm : 0.0)}, {"share", std::round(sum > 0 ? tm / sum * 1e4 : 0.0) / 1e4}});
    }
    j["vision_gflop"] = std::round(total_flop * 1e-7) / 100;
    j["layers"] = layers;
  }
  j["load_ms"] = std::round(load_ms);
  std::cout << j.dump() << std::endl;
  return 0;
}
bool built_with_cuda() { return true; }

namespace {
template <variant V>
std::function<std::vector<image_result>(const std::vector<image_u8>&)> cuda_infer(const cuda_predict_request& r, const pipeline_options& po,
                                                                                const gguf::file* f) {
  cudart::require_device(r.device);
  using M = model<cuda, V>;
  struct state {
    context<cuda> ctx;
    std::optional<M> m;
    std::optional<pipeline<cuda, V>> p;
    state(int device, int threads) : ctx(device, threads) {}
  };
  auto st = std::make_shared<state>(r.device, r.host_threads);
  if (r.half) st->ctx.set_precision(cuda_precision::fp16);
  if (f) {
    st->m.emplace(M::load(*f, {.device = r.device}));
  } else {
    random_weights ws(0);
    st->m.emplace(M::from_source(ws, {.device = r.device}));
  }
  st->p.emplace(*st->m, po);
  return [st](const std::vector<image_u8>& imgs) { return st->p->run(st->ctx, imgs); };
}
}  // namespace

std::function<std::vector<image_result>(const std::vector<image_u8>&)> make_cuda_infer(const cuda_predict_request& r, const pipeline_options& po,
                                                                                     const gguf::file* f) {
  if (r.variant == gyolo_c::name) return cuda_infer<gyolo_c>(r, po, f);
  if (r.variant == gyolo_shapes::name) return cuda_infer<gyolo_shapes>(r, po, f);
  throw error("--device cuda: no CUDA build of variant '" + r.variant + "'");
}
