// Training II, the vision loss's target assignment (train/assigner.hpp) against upstream's own
// functions: bbox_iou(CIoU), bbox_decode, ComputeLossLH.preprocess and TaskAlignedAssigner, on
// fixtures made by weights_tools/make_loss_fixtures.py (random and edge-case batches, all drawn so
// that no selection hinges on a near-tie).
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "gyolo/io/npy.hpp"
#include "gyolo/train/assigner.hpp"
#include "gyolo/train/vision_loss.hpp"
#include "gyolo/train/optim.hpp"
#include "gyolo/layers/conv_train.hpp"
#include "test_util.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_loss {

using namespace gyolo;

namespace {
const std::string ldir = std::string(GYOLO_FIXTURES_DIR) + "/loss/";

template <class T>
std::vector<T> arr(const std::string& name, std::vector<std::int64_t>* shape = nullptr) {
  auto a = npy::load(ldir + name + ".npy");
  if (shape) *shape = a.shape;
  return a.as<T>();
}
}  // namespace

TEST_CASE("loss: CIoU equals upstream's bbox_iou(CIoU=True) on random and edge pairs", "[loss]") {
  const auto b1 = arr<float>("ciou.b1"), b2 = arr<float>("ciou.b2"), ref = arr<float>("ciou.out");
  REQUIRE(b1.size() == 4 * ref.size());
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const float got = train::bbox_ciou({b1[4 * i], b1[4 * i + 1], b1[4 * i + 2], b1[4 * i + 3]},
                                       {b2[4 * i], b2[4 * i + 1], b2[4 * i + 2], b2[4 * i + 3]});
    INFO("pair " << i << ": " << got << " vs " << ref[i]);
    CHECK(std::abs(got - ref[i]) <= 1e-5f * std::max(1.0f, std::abs(ref[i])));
  }
}

TEST_CASE("loss: anchors and DFL box decoding equal upstream's make_anchors and bbox_decode", "[loss]") {
  const auto a = train::make_anchors({{8, 12}, {4, 6}, {2, 3}}, {8, 16, 32});
  const auto anc = arr<float>("decode.anc"), st = arr<float>("decode.stride");
  REQUIRE(a.points == anc);  // exact: x + 0.5
  REQUIRE(a.strides == st);
  const auto dist = arr<float>("decode.dist"), ref = arr<float>("decode.out");
  std::vector<float> out(ref.size());
  train::bbox_decode(dist.data(), a.points.data(), a.count(), 16, out.data());
  test::check_close(out.data(), ref.data(), std::int64_t(ref.size()), 1e-5, 0, "bbox_decode");
}

TEST_CASE("loss: the task-aligned assigner equals upstream's on random and edge-case batches", "[loss]") {
  for (const char* name : {"random", "none", "one", "overlapping", "border", "o2o"}) {
    const std::string p = std::string("tal.") + name + ".";
    INFO("case " << name);
    std::vector<std::int64_t> ss, ts;
    const auto scores = arr<float>(p + "scores", &ss);
    const auto boxes = arr<float>(p + "boxes");
    const auto anc = arr<float>(p + "anc");
    const auto targets = arr<float>(p + "targets", &ts);
    const auto hw = arr<std::int32_t>(p + "hw");
    const int topk = arr<std::int32_t>(p + "topk")[0];
    const int B = int(ss[0]), A = int(ss[1]), nc = int(ss[2]);
    const auto gt = train::preprocess_targets(targets.data(), int(ts[0]), B, hw[0], hw[1]);
    train::tal_config cfg;
    cfg.topk = topk;
    cfg.num_classes = nc;
    const auto r = train::task_aligned_assign(cfg, scores.data(), boxes.data(), anc.data(), B, A, gt);
    const auto fg = arr<std::uint8_t>(p + "fg");
    const auto gt_idx = arr<std::int32_t>(p + "gt_idx");
    const auto labels = arr<std::int32_t>(p + "labels");
    const auto tboxes = arr<float>(p + "tboxes");
    const auto tscores = arr<float>(p + "tscores");
    REQUIRE(r.fg.size() == fg.size());
    int npos = 0;
    for (std::size_t i = 0; i < fg.size(); ++i) {
      INFO("anchor " << i % std::size_t(A) << " of image " << i / std::size_t(A));
      REQUIRE(int(r.fg[i]) == int(fg[i]));
      npos += fg[i];
      // where not positive, upstream's index and label are those of object 0 (or background with no objects)
      CHECK(r.gt_idx[i] == gt_idx[i]);
      CHECK(r.labels[i] == labels[i]);
      for (int k = 0; k < 4; ++k) CHECK(r.boxes[4 * i + std::size_t(k)] == Approx(tboxes[4 * i + std::size_t(k)]).epsilon(1e-6).margin(1e-4));
    }
    if (std::string(name) != "none") CHECK(npos > 0);
    test::check_close(r.scores.data(), tscores.data(), std::int64_t(tscores.size()), 1e-5, 1e-7, p + "scores");
    double ref_sum = 0;
    for (float v : tscores) ref_sum += v;
    CHECK(r.score_sum() == Approx(ref_sum).epsilon(1e-5));
  }
}

TEST_CASE("loss: bad ground truth gets a clear error", "[loss]") {
  const float bad_image[] = {2, 1, 0.5f, 0.5f, 0.2f, 0.2f};  // image 2 of a batch of 2
  REQUIRE_THROWS_WITH(train::preprocess_targets(bad_image, 1, 2, 64, 64), Catch::Contains("image index 2") && Catch::Contains("[0, 2)"));
  const float bad_class[] = {0, 80, 0.5f, 0.5f, 0.2f, 0.2f};
  const auto gt = train::preprocess_targets(bad_class, 1, 1, 64, 64);
  const auto a = train::make_anchors({{8, 8}, {4, 4}, {2, 2}}, {8, 16, 32});
  std::vector<float> scores(std::size_t(a.count()) * 80, 0.5f), boxes(std::size_t(a.count()) * 4, 1.0f), anc(a.points);
  for (auto& v : anc) v *= 8;
  train::tal_config cfg;
  REQUIRE_THROWS_WITH(train::task_aligned_assign(cfg, scores.data(), boxes.data(), anc.data(), 1, a.count(), gt),
                      Catch::Contains("class 80") && Catch::Contains("[0, 80)"));
  const float nan_class[] = {0, NAN, 0.5f, 0.5f, 0.2f, 0.2f};
  const auto gn = train::preprocess_targets(nan_class, 1, 1, 64, 64);
  REQUIRE_THROWS_WITH(train::task_aligned_assign(cfg, scores.data(), boxes.data(), anc.data(), 1, a.count(), gn), Catch::Contains("class nan"));
}

TEST_CASE("loss: the vision loss (ComputeLossLH) and its gradients equal upstream's autograd", "[loss]") {
  for (const char* name : {"random", "one_empty"}) {
    const std::string p = std::string("vl.") + name + ".";
    INFO("case " << name);
    std::map<std::string, tensor<float>> o, g;
    std::vector<std::string> names;
    for (int k = 0; k < 3; ++k)
      for (int l = 0; l < 3; ++l) names.push_back("d" + std::to_string(k) + "_" + std::to_string(l));
    for (int k = 0; k < 2; ++k)
      for (const char* n : {"mc", "p", "s"}) names.push_back(n + std::to_string(k));
    for (const auto& n : names) {
      o[n] = test::load4(ldir + p + n + ".npy");
      g[n] = tensor<float>(o[n].shape());
      for (std::int64_t i = 0; i < g[n].numel(); ++i) g[n][i] = 0.25f;  // prefilled: gradients must accumulate
    }
    train::vision_loss_outputs out;
    train::vision_loss_grads gr;
    for (int k = 0; k < 3; ++k)
      for (int l = 0; l < 3; ++l) {
        const auto n = "d" + std::to_string(k) + "_" + std::to_string(l);
        out.d[std::size_t(k)][std::size_t(l)] = o[n].cv();
        gr.d[std::size_t(k)][std::size_t(l)] = g[n].v();
      }
    for (int k = 0; k < 2; ++k) {
      const auto s = std::to_string(k);
      out.mc[std::size_t(k)] = o["mc" + s].cv();
      out.p[std::size_t(k)] = o["p" + s].cv();
      out.s[std::size_t(k)] = o["s" + s].cv();
      gr.mc[std::size_t(k)] = g["mc" + s].v();
      gr.p[std::size_t(k)] = g["p" + s].v();
      gr.s[std::size_t(k)] = g["s" + s].v();
    }
    std::vector<std::int64_t> ts;
    const auto targets = arr<float>(p + "targets", &ts);
    const auto masks = arr<float>(p + "masks");
    const auto semasks = arr<float>(p + "semasks");
    train::vision_targets vt;
    vt.targets = targets.data();
    vt.n = int(ts[0]);
    vt.masks = masks.data();
    vt.semasks = semasks.data();
    const auto r = train::vision_loss(train::vision_loss_config{}, out, vt, gr);
    const auto items = arr<float>(p + "items");
    const auto total = arr<float>(p + "total");
    for (int i = 0; i < 6; ++i) {
      INFO(train::vision_loss_items::names[std::size_t(i)] << ": " << r.items[std::size_t(i)] << " vs upstream " << items[std::size_t(i)]);
      CHECK(r.items[std::size_t(i)] == Approx(items[std::size_t(i)]).epsilon(1e-5));
    }
    CHECK(r.total == Approx(total[0]).epsilon(1e-5));
    for (const auto& n : names) {
      const auto ref = test::load4(ldir + p + "g." + n + ".npy");
      REQUIRE(ref.numel() == g[n].numel());
      std::vector<float> got(std::size_t(ref.numel()));
      for (std::int64_t i = 0; i < ref.numel(); ++i) got[std::size_t(i)] = g[n][i] - 0.25f;  // what was added
      // <= 1e-3 max|ref|, plus the rounding of the prefilled 0.25 (2^-24 x 0.5)
      test::check_close(got.data(), ref.data(), ref.numel(), 1e-3, 3e-8, p + "grad " + n);
    }
  }
}

namespace {
/// The five parameters of the optimizer fixtures (conv weight, BN weight, BN bias, bias, weight),
/// with upstream's groups.
struct opt_params {
  std::vector<param> ps;
  std::vector<train::param_ref> refs;
  opt_params() {
    const auto groups = arr<std::int32_t>("opt.groups");
    ps.resize(groups.size());
    for (std::size_t i = 0; i < ps.size(); ++i) {
      std::vector<std::int64_t> sh;
      ps[i].value = arr<float>("opt.p" + std::to_string(i) + ".init", &sh);
      ps[i].shape = dims(sh.begin(), sh.end());
    }
    for (std::size_t i = 0; i < ps.size(); ++i) refs.push_back({"p" + std::to_string(i), &ps[i], train::param_group(groups[i])});
  }
  void set_grads(int step) {
    for (std::size_t i = 0; i < ps.size(); ++i) {
      ps[i].g();
      ps[i].grad = arr<float>("opt.g" + std::to_string(i) + ".step" + std::to_string(step));
    }
  }
};
}  // namespace

TEST_CASE("optim: AdamW and SGD (Nesterov) with upstream's groups equal torch.optim over three steps", "[loss][optim]") {
  const auto lr = arr<double>("opt.lr");  // [3 steps, 3 groups]
  opt_params a, s;
  train::adamw_options ao;
  ao.weight_decay = 0.005;
  train::adamw adam(a.refs, ao);
  train::sgd_options so;
  so.lr = 0.01;
  so.weight_decay = 0.005;
  train::sgd sg(s.refs, so);
  for (int st = 0; st < 3; ++st) {
    for (int j = 0; j < 3; ++j) adam.groups.lr[std::size_t(j)] = sg.groups.lr[std::size_t(j)] = lr[std::size_t(st * 3 + j)];
    a.set_grads(st);
    s.set_grads(st);
    adam.step();
    sg.step();
  }
  for (std::size_t i = 0; i < a.ps.size(); ++i) {
    const auto n = std::to_string(i);
    test::check_close(a.ps[i].value.data(), arr<float>("opt.adamw.p" + n).data(), a.ps[i].numel(), 1e-6, 1e-7, "adamw p" + n);
    test::check_close(adam.state_of(i).m.data(), arr<float>("opt.adamw.m" + n).data(), a.ps[i].numel(), 1e-6, 1e-9, "adamw m" + n);
    test::check_close(adam.state_of(i).v.data(), arr<float>("opt.adamw.v" + n).data(), a.ps[i].numel(), 1e-6, 1e-12, "adamw v" + n);
    CHECK(adam.state_of(i).step == 3);
    test::check_close(s.ps[i].value.data(), arr<float>("opt.sgd.p" + n).data(), s.ps[i].numel(), 1e-6, 1e-7, "sgd p" + n);
  }
  // a parameter that never received a gradient is not stepped (no weight decay either)
  param untouched;
  untouched.init({3});
  untouched.value = {1, 2, 3};
  train::adamw lonely({{"w", &untouched, train::param_group::weight}}, ao);
  lonely.step();
  CHECK(untouched.value == std::vector<float>{1, 2, 3});
}

TEST_CASE("optim: gradient clipping, the flat-cosine schedule and the EMA equal upstream's", "[loss][optim]") {
  for (const char* mx : {"10", "0.05"}) {
    opt_params p;
    for (std::size_t i = 0; i < p.ps.size(); ++i) {
      p.ps[i].g();
      p.ps[i].grad = arr<float>("opt.clip.g" + std::to_string(i));
    }
    const float total = train::clip_grad_norm(p.refs, std::stod(mx));
    CHECK(total == Approx(arr<float>("opt.clip.total")[0]).epsilon(1e-6));
    for (std::size_t i = 0; i < p.ps.size(); ++i)
      test::check_close(p.ps[i].grad.data(), arr<float>("opt.clip.out" + std::to_string(i) + "." + mx).data(), p.ps[i].numel(), 1e-6, 0,
                        std::string("clip ") + mx);
  }
  {
    opt_params p;
    p.set_grads(0);
    p.ps[1].grad[0] = NAN;
    REQUIRE_THROWS_WITH(train::clip_grad_norm(p.refs, 10.0), Catch::Contains("not finite"));
  }
  const auto flat = arr<double>("opt.flat");
  for (int x = 0; x <= 60; ++x) {
    CHECK(train::one_flat_cycle(1, 0.125, 60, x) == Approx(flat[std::size_t(2 * x)]).epsilon(1e-12));
    CHECK(train::one_flat_cycle(1, 0.25, 60, x) == Approx(flat[std::size_t(2 * x + 1)]).epsilon(1e-12));
  }
  CHECK(train::warmup_lr(0, 100, 0.01, 0.004) == 0.01);
  CHECK(train::warmup_lr(50, 100, 0.01, 0.004) == Approx(0.007));
  CHECK(train::warmup_lr(100, 100, 0.0, 0.004) == 0.004);
  // EMA over a Conv + BatchNorm, in upstream's state_dict names
  train_conv<reference> model, ema;
  model.init_bn(3, 6, 3, 1, 1, act::silu);
  ema.init_bn(3, 6, 3, 1, 1, act::silu);
  auto fill = [](train_conv<reference>& m, const std::string& pre) {
    nn::walk(m, "", [&] {
      struct f {
        std::string pre;
        void param(const std::string& n, param& p) { p.value = arr<float>(pre + n); }
        void buffer(const std::string& n, buffer& b) { b.value = arr<float>(pre + n); }
      };
      return f{pre};
    }());
  };
  fill(ema, "opt.ema.init.");
  train::model_ema e;
  for (int u = 0; u < 2; ++u) {
    fill(model, "opt.ema.model" + std::to_string(u) + ".");
    e.update(ema, model);
  }
  CHECK(e.updates == 2);
  nn::walk(ema, "", [] {
    struct f {
      void param(const std::string& n, param& p) { test::check_close(p.value.data(), arr<float>("opt.ema.out." + n).data(), p.numel(), 1e-6, 1e-9, n); }
      void buffer(const std::string& n, buffer& b) { test::check_close(b.value.data(), arr<float>("opt.ema.out." + n).data(), b.numel(), 1e-6, 1e-9, n); }
    };
    return f{};
  }());
}

TEST_CASE("optim: upstream's parameter groups come from the module descriptions", "[loss][optim]") {
  train_conv<reference> cbn, cb;
  cbn.init_bn(4, 8, 3, 1, 1, act::silu);
  cb.init_bias(4, 8, 1, 1, 1);
  const auto r1 = train::collect_params(cbn, "m.1"), r2 = train::collect_params(cb, "m.2");
  REQUIRE(r1.size() == 3);
  CHECK(r1[0].name == "m.1.conv.weight");
  CHECK(r1[0].group == train::param_group::weight);
  CHECK(r1[1].name == "m.1.bn.weight");
  CHECK(r1[1].group == train::param_group::norm_weight);
  CHECK(r1[2].group == train::param_group::bias);
  REQUIRE(r2.size() == 2);
  CHECK(r2[0].group == train::param_group::weight);
  CHECK(r2[1].name == "m.2.bias");
  CHECK(r2[1].group == train::param_group::bias);
}

TEST_CASE("loss: a degenerate box (zero width or height) is assigned nothing and changes nothing", "[loss]") {
  const std::string p = "vl.random.";
  std::map<std::string, tensor<float>> o;
  train::vision_loss_outputs out;
  for (int k = 0; k < 3; ++k)
    for (int l = 0; l < 3; ++l) {
      const auto n = "d" + std::to_string(k) + "_" + std::to_string(l);
      o[n] = test::load4(ldir + p + n + ".npy");
      out.d[std::size_t(k)][std::size_t(l)] = o[n].cv();
    }
  for (int k = 0; k < 2; ++k)
    for (const char* nm : {"mc", "p", "s"}) {
      const auto n = nm + std::to_string(k);
      o[n] = test::load4(ldir + p + n + ".npy");
      if (nm[0] == 'm') out.mc[std::size_t(k)] = o[n].cv();
      if (nm[0] == 'p') out.p[std::size_t(k)] = o[n].cv();
      if (nm[0] == 's') out.s[std::size_t(k)] = o[n].cv();
    }
  std::vector<std::int64_t> ts, ms;
  auto targets = arr<float>(p + "targets", &ts);
  auto masks = arr<float>(p + "masks", &ms);
  const auto semasks = arr<float>(p + "semasks");
  train::vision_targets vt{targets.data(), int(ts[0]), masks.data(), semasks.data()};
  const auto ref = train::vision_loss(train::vision_loss_config{}, out, vt, {});
  for (const auto& extra : {std::vector<float>{0, 7, 0.5f, 0.5f, 0.0f, 0.3f}, std::vector<float>{1, 2, 0.4f, 0.6f, 0.2f, 0.0f}}) {
    auto t2 = targets;
    t2.insert(t2.end(), extra.begin(), extra.end());
    auto m2 = masks;
    m2.resize(m2.size() + std::size_t(ms[1] * ms[2]), 0.0f);
    train::vision_targets v2{t2.data(), int(ts[0]) + 1, m2.data(), semasks.data()};
    const auto r = train::vision_loss(train::vision_loss_config{}, out, v2, {});
    for (int i = 0; i < 6; ++i) CHECK(r.items[std::size_t(i)] == Approx(ref.items[std::size_t(i)]).epsilon(1e-6));
    CHECK(std::isfinite(r.total));
  }
}

}  // namespace test_loss
