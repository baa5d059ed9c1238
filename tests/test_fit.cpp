// Training III: training runs (train/fit.hpp) on generated scenes (data/scenes.hpp) read by the real
// loader: a short run whose loss falls and whose metrics rise, resume equal to an uninterrupted run,
// and the files a run writes (a model yaml gyolo writes itself, metadata, best.gguf loading as an
// inference model of a compile-time variant).
#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "gyolo/gyolo.hpp"
#include "gyolo/data/scenes.hpp"
#include "gyolo/train/fit.hpp"
#include "gyolo/train/setup.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_fit {

using namespace gyolo;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  const auto d = fs::temp_directory_path() / ("gyolo_test_fit_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

/// A small generated dataset: `train` and `val` scenes of 100..128 px.
fs::path make_data(const std::string& name, int train, int val) {
  const auto d = temp_dir(name) / "data";
  data::dataset_gen_options o;
  o.out = d.string();
  o.train = train;
  o.val = val;
  o.seed = 3;
  o.scene.min_size = 100;
  o.scene.max_size = 128;
  o.scene.min_object_px = 16;
  o.scene.max_object_px = 28;
  o.scene.max_objects = 2;
  data::write_dataset(o);
  return d / "data.yaml";
}

std::vector<std::string> vocab() { return train::read_vocab(std::string(GYOLO_FIXTURES_DIR) + "/../../weights_tools/data/vocab.txt"); }

struct run {
  train::model_info info;
  train_model<cpu> m;
  train::run_options o;
};

void setup(run& r, const fs::path& yaml, int epochs) {
  const auto cfg = data::read_data_yaml(yaml);
  r.info = train::new_model_info(cfg, "nano", vocab(), true);
  r.m.init(r.info.variant, r.info.grit);
  train::init_weights(r.m, r.info.variant.nc, 5);
  r.o.data = yaml.string();
  r.o.epochs = epochs;
  r.o.batch = 4;
  r.o.imgsz = 128;  // Grit needs >= 300 anchors
  r.o.close_mosaic = 1;
  r.o.seed = 11;
}

std::map<std::string, std::vector<float>> tensors(const std::string& path) {
  gguf::file f(path);
  gguf_weights ws(f);
  std::map<std::string, std::vector<float>> r;
  for (const auto& t : f.tensors()) {
    const auto s = t.torch_shape();
    r[t.name] = ws.get(t.name, dims(s.begin(), s.end()));
  }
  return r;
}

}  // namespace

TEST_CASE("variant_yaml is read back as the same variant", "[fit]") {
  for (const auto& v : {gyolo_c::value, gyolo_tiny::value, scaled_gyolo(0.25, 3), nano_variant(5, 7)}) {
    const auto y = variant_yaml(v);
    CHECK(variant_from_yaml(y, "test") == v);
  }
  auto bad = nano_variant(5, 7);
  bad.nm = 12;
  CHECK_THROWS_WITH(variant_yaml(bad), Catch::Contains("multiple of 8"));
}

TEST_CASE("init_weights: PyTorch's defaults, the head's bias init, deterministic", "[fit]") {
  train_model<cpu> a, b;
  grit_config g;
  g.d_model = 128, g.n_heads = 4, g.d_ff = 256, g.vocab_size = 20;
  const auto v = nano_variant(5, 7);
  g.grid_feat_dim = std::max(v.psa, 128);
  a.init(v, g);
  b.init(v, g);
  train::init_weights(a, 5, 1);
  train::init_weights(b, 5, 1);
  std::map<std::string, param*> pa, pb;
  nn::for_each_param(a, "model", [&](const std::string& n, param& p) { pa[n] = &p; });
  nn::for_each_param(b, "model", [&](const std::string& n, param& p) { pb[n] = &p; });
  for (auto& [n, p] : pa) REQUIRE(p->value == pb[n]->value);
  // a conv weight: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), not constant
  const auto& w = pa.at("model.1.conv.weight")->value;
  const double bound = 1.0 / std::sqrt(3.0 * 3 * 3);
  float lo = 1, hi = -1;
  for (float x : w) lo = std::min(lo, x), hi = std::max(hi, x);
  CHECK(lo >= -bound);
  CHECK(hi <= bound);
  CHECK(hi - lo > bound);
  for (float x : pa.at("model.1.bn.weight")->value) CHECK(x == 1.0f);
  for (float x : pa.at("model.1.bn.bias")->value) CHECK(x == 0.0f);
  // Detect.bias_init: box biases 1, class biases ln(5 / nc / (640 / s)^2)
  for (float x : pa.at("model.55.cv6.0.2.bias")->value) CHECK(x == 1.0f);
  for (const char* c : {"cv3", "cv5", "cv7"}) {
    CHECK(pa.at(std::string("model.55.") + c + ".0.4.bias")->value[0] == Approx(std::log(5.0 / 5 / (80.0 * 80.0))));
    CHECK(pa.at(std::string("model.55.") + c + ".2.4.bias")->value[4] == Approx(std::log(5.0 / 5 / (20.0 * 20.0))));
  }
  for (float x : pa.at("model.55.cv2.1.2.bias")->value) CHECK(x == 1.0f);
  // another seed differs
  train::init_weights(b, 5, 2);
  CHECK(pa.at("model.1.conv.weight")->value != pb.at("model.1.conv.weight")->value);
}

TEST_CASE("a short training run: the loss falls, the metrics rise, the files load", "[fit][fit-run]") {
  const auto yaml = make_data("short", 16, 8);
  run r;
  setup(r, yaml, 6);
  const auto out = yaml.parent_path().parent_path() / "run";
  std::vector<train::epoch_report> reps;
  train::fit_callbacks cb;
  cb.on_epoch = [&](const train::epoch_report& e) { reps.push_back(e); };
  train::fitter<cpu> fit(r.m, r.info, r.o, out, 2, 1, cb);
  // before training: the EMA (= the initial model) on val
  const auto before = fit.validate();
  REQUIRE(fit.run() == train::fit_end::finished);
  REQUIRE(reps.size() == 6);
  const double first = reps.front().losses.mean(0) + reps.front().losses.mean(2) + reps.front().losses.mean(4);
  const double last = reps.back().losses.mean(0) + reps.back().losses.mean(2) + reps.back().losses.mean(4);
  CHECK(last < 0.8 * first);                                // box + cls + focal semantic losses
  CHECK(reps.back().losses.mean(6) < reps.front().losses.mean(6));  // caption loss
  REQUIRE(reps.back().val);
  const auto& after = *reps.back().val;
  INFO("before: " << before.summary() << "\nafter:  " << after.summary());
  CHECK(after.semantic.aacc > before.semantic.aacc + 0.1);
  CHECK(after.miou() > before.miou());
  CHECK(after.caption.bleu[0] > before.caption.bleu[0]);
  // the files: last.gguf resumable, best.gguf an inference model of the compile-time variant
  REQUIRE(fs::exists(out / "last.gguf"));
  REQUIRE(fs::exists(out / "best.gguf"));
  auto m = model<cpu, gyolo_shapes>::load((out / "best.gguf").string());
  CHECK(m.names() == std::vector<std::string>{"circle", "square", "triangle", "star", "heart"});
  CHECK(m.has_caption());
  const auto info = train::read_model_info(gguf::file((out / "best.gguf").string()), "best");
  CHECK(info.stuff_names == r.info.stuff_names);
  CHECK(info.vocab == r.info.vocab);
}

TEST_CASE("resume: a run stopped mid-epoch and resumed equals an uninterrupted run", "[fit][fit-run]") {
  const auto yaml = make_data("resume", 12, 4);
  const auto base = yaml.parent_path().parent_path();
  // uninterrupted: 2 epochs
  {
    run r;
    setup(r, yaml, 2);
    r.o.val_every = 0;
    train::fitter<cpu> fit(r.m, r.info, r.o, base / "a", 2, 1);
    REQUIRE(fit.run() == train::fit_end::finished);
  }
  // stopped after 4 batches (epoch 1, batch 1), then resumed from last.gguf
  {
    run r;
    setup(r, yaml, 2);
    r.o.val_every = 0;
    std::atomic<bool> stop{false};
    int batches = 0;
    train::fit_callbacks cb;
    cb.on_batch = [&](const train::batch_progress&) {
      if (++batches == 4) stop = true;
    };
    train::fitter<cpu> fit(r.m, r.info, r.o, base / "b", 2, 1, cb);
    REQUIRE(fit.run(&stop) == train::fit_end::stopped);
    CHECK(fit.state().epoch == 1);
    CHECK(fit.state().batch == 1);
  }
  {
    const auto last = (base / "b" / "last.gguf").string();
    gguf::file f(last);
    run r;
    r.info = train::read_model_info(f, last);
    r.o = train::run_options::from_json(nlohmann::json::parse(f.get_string("gyolo.train.run")));
    r.m.init(r.info.variant, r.info.grit);
    gguf_weights ws(f);
    nn::load_tensors(r.m, ws, "model");
    train::fitter<cpu> fit(r.m, r.info, r.o, base / "b", 2, 1);
    fit.resume(f);
    REQUIRE(fit.run() == train::fit_end::finished);
  }
  const auto a = tensors((base / "a" / "last.gguf").string()), b = tensors((base / "b" / "last.gguf").string());
  REQUIRE(a.size() == b.size());
  for (const auto& [n, v] : a) {
    INFO(n);
    REQUIRE(b.count(n));
    CHECK(v == b.at(n));
  }
}

}  // namespace test_fit
