// Train-mode Grit caption head (layers/grit_train.hpp) against upstream's autograd: fixtures made by
// weights_tools/make_grit_train_fixtures.py (tiny variant; Grit weights = tests/fixtures/train/
// weights.gguf; train mode, teacher forcing, dropout off; reference in float64).
// Per tensor: max|ours - ref| <= 1e-3 * max|ref| (+ a small absolute floor only for gradients that
// are analytically zero: the fc_k biases, which a softmax over keys cancels).
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <set>
#include <string>

#include "gyolo/gyolo.hpp"
#include "gyolo/layers/grit_train.hpp"
#include "gyolo/model/train_model.hpp"
#include "gyolo/nn/module.hpp"
#include "test_util.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_grit_train {

using namespace gyolo;
using namespace gyolo::test;

namespace {
const std::string gdir = std::string(GYOLO_FIXTURES_DIR) + "/train_grit/";
const std::string wpath = std::string(GYOLO_FIXTURES_DIR) + "/train/weights.gguf";

grit_config tiny_config() {
  gguf::file f(wpath);
  return grit_config::from_json(nlohmann::json::parse(f.get_string("gyolo.grit_config")));
}
std::array<int, 5> tiny_channels() {
  const auto c = gyolo_tiny::value;
  return {c.e17.c2, c.e20.c2, c.e23.c2, c.psa, c.e43.c2};
}

/// The fixture's Grit inputs, loaded once.
struct grit_fixture {
  std::array<tensor<float>, 5> x;  // x17, x20, x23, x11, x44
  std::array<tensor<float>, 3> d3;
  tensor<float> s2;
  std::vector<std::int64_t> caps;
  int L = 0;
  static constexpr const char* names[5] = {"x17", "x20", "x23", "x11", "x44"};
  grit_fixture() {
    for (int i = 0; i < 5; ++i) x[std::size_t(i)] = load4(gdir + std::string("in.") + names[i] + ".npy");
    for (int l = 0; l < 3; ++l) d3[std::size_t(l)] = load4(gdir + "in.d3_" + std::to_string(l) + ".npy");
    s2 = load4(gdir + "in.s2.npy");
    auto c = npy::load(gdir + "caps.npy");
    caps = c.as<std::int64_t>();
    REQUIRE(c.shape.size() == 2);
    L = int(c.shape[1]);
  }
};

template <class B>
void load_grit(grit_train<B>& g) {
  g.init(tiny_config(), tiny_channels());
  gguf::file wf(wpath);
  gguf_weights ws(wf);
  nn::load_tensors(g, ws, "model.56");
}

/// Runs the head on the fixture's inputs; fills `in_vars` with the tape copies of the features.
template <class B>
tvar run(tape<B>& tp, const grit_train<B>& g, const grit_fixture& fx, std::array<tvar, 5>& in_vars) {
  for (int i = 0; i < 5; ++i) in_vars[std::size_t(i)] = tp.input(fx.x[std::size_t(i)].cv(), true);
  grit_train_inputs in;
  in.x17 = in_vars[0].t;
  in.x20 = in_vars[1].t;
  in.x23 = in_vars[2].t;
  in.x11 = in_vars[3].t;
  in.x44 = in_vars[4].t;
  for (int l = 0; l < 3; ++l) in.d3[std::size_t(l)] = fx.d3[std::size_t(l)].cv();
  in.semantic = fx.s2.cv();
  in.caps = fx.caps.data();
  in.seq_len = fx.L;
  return g.forward(tp, in);
}
}  // namespace

TEST_CASE("grit train: the module description names exactly upstream's model.56 tensors", "[train][grit]") {
  grit_train<reference> g;
  g.init(tiny_config(), tiny_channels());
  const auto ex = nn::expected_tensors(g, "model.56");
  gguf::file wf(wpath);
  std::vector<std::pair<std::string, dims>> file;
  for (auto& t : wf.tensors())
    if (t.name.rfind("model.56.", 0) == 0) file.emplace_back(t.name, t.torch_shape());
  REQUIRE(file.size() == ex.size());
  for (std::size_t i = 0; i < ex.size(); ++i) {
    INFO(i << ": " << ex[i].first << " vs " << file[i].first);
    CHECK(ex[i].first == file[i].first);  // same names in upstream's state_dict order
    CHECK(ex[i].second == file[i].second);
  }
  // parameters vs buffers: pos_emb is frozen (a buffer), fc_alpha2 a parameter that never trains
  std::set<std::string> bufs;
  nn::for_each_buffer(g, "model.56", [&](const std::string& n, buffer&) { bufs.insert(n); });
  CHECK(bufs.count("model.56.grit_transformer.cap_generator.pos_emb.weight"));
  CHECK(bufs.size() == 1 + 2 * (3 * 2 + 2 + 2));  // pos_emb + running mean/var of 10 BNs
}

TEST_CASE("grit train: fixture weights are those of tests/fixtures/train/weights.gguf", "[train][grit]") {
  tensor_file chk(gdir + "weights_check.gguf");
  gguf::file wf(wpath);
  int n = 0;
  for (auto& t : chk.f.tensors()) {
    INFO(t.name << ": tests/fixtures/train/weights.gguf changed; regenerate tests/fixtures/train_grit "
                   "(weights_tools/make_grit_train_fixtures.py)");
    const auto* w = wf.find(t.name);
    REQUIRE(w != nullptr);
    const auto v = wf.read_f32(*w);
    double s = 0, a = 0, q = 0;
    for (float x : v) s += x, a += std::abs(double(x)), q += double(x) * x;
    const auto ref = chk.get(t.name);
    CHECK(std::abs(s - ref[0]) <= 1e-5 * std::max(1.0, double(ref[1])));
    CHECK(std::abs(a - ref[1]) <= 1e-6 * std::max(1.0, double(ref[1])));
    CHECK(std::abs(q - ref[2]) <= 1e-6 * std::max(1.0, double(ref[2])));
    ++n;
  }
  CHECK(n == 113);
}

TEST_CASE("grit train: teacher-forced forward and backward equal upstream autograd (float64)", "[train][grit]") {
  context<cpu> ctx(2);
  grit_train<cpu> g;
  load_grit(g);
  grit_fixture fx;
  tape<cpu> tp(ctx);
  std::array<tvar, 5> xin;
  nn::zero_grad(g);
  auto logp = run(tp, g, fx, xin);
  // outputs
  auto ref = load4(gdir + "out.logp.npy");
  REQUIRE(logp.shape() == ref.shape());
  const auto ours = flat(logp.t.val());
  check_close(ours.data(), ref.data(), ref.numel(), 1e-3, 0.0, "log-probs");
  // L = sum(logp * proj)
  auto proj = load4(gdir + "proj.npy");
  std::copy(proj.data(), proj.data() + proj.numel(), logp.t.gdata);
  tp.backward();

  tensor_file grads(gdir + "grads.gguf"), bn(gdir + "bn_after.gguf");
  double gmax = 0;
  for (auto& t : grads.f.tensors())
    if (t.name.rfind("model.56.", 0) == 0)
      for (float v : grads.get(t.name)) gmax = std::max(gmax, double(std::abs(v)));
  int checked = 0;
  std::set<std::string> zero_ok;
  nn::for_each_param(g, "model.56", [&](const std::string& name, param& p) {
    REQUIRE(p.grad.size() == p.value.size());
    if (!grads.has(name)) {
      // upstream: no gradient at all (fc_alpha2 is never used)
      INFO(name);
      CHECK(name.find("fc_alpha2") != std::string::npos);
      for (float v : p.grad) CHECK(v == 0.0f);
      zero_ok.insert(name);
      return;
    }
    const auto r = grads.get(name);
    REQUIRE(std::int64_t(r.size()) == p.numel());
    // analytically zero: fc_k biases (adding a constant to every key's score cancels in softmax)
    const bool vanishing = name.find("fc_k.bias") != std::string::npos;
    check_close(p.grad.data(), r.data(), p.numel(), 1e-3, vanishing ? 1e-6 * gmax : 0.0, "grad " + name);
    ++checked;
  });
  CHECK(checked == 113 - 1 - 2 * 10 - 2);  // 113 tensors - pos_emb - 20 BN buffers - fc_alpha2 (2)
  CHECK(zero_ok.size() == 2);
  // word_emb's PAD row never receives a gradient
  const auto& we = g.grit_transformer.cap_generator.word_emb.w;
  for (int c = 0; c < g.cfg.d_model; ++c) CHECK(we.grad[std::size_t(c)] == 0.0f);
  // feature gradients
  for (int i = 0; i < 5; ++i) {
    const auto r = grads.get(grit_fixture::names[i]);
    const auto d = flat(xin[std::size_t(i)].t.grad());
    REQUIRE(d.size() == r.size());
    check_close(d.data(), r.data(), std::int64_t(r.size()), 1e-3, 0.0, std::string("input gradient ") + grit_fixture::names[i]);
  }
  // BN running statistics after the one training forward
  int nbn = 0;
  nn::for_each_buffer(g, "model.56", [&](const std::string& name, buffer& b) {
    if (name.find("running_") == std::string::npos) return;
    const auto r = bn.get(name);
    check_close(b.value.data(), r.data(), b.numel(), 1e-5, 1e-7, name);
    ++nbn;
  });
  CHECK(nbn == 20);
}

TEST_CASE("grit train: upstream's caption loss (NLL, PAD ignored, x gain x B) and its gradients", "[train][grit]") {
  context<cpu> ctx(2);
  grit_train<cpu> g;
  load_grit(g);
  grit_fixture fx;
  tape<cpu> tp(ctx);
  std::array<tvar, 5> xin;
  nn::zero_grad(g);
  auto logp = run(tp, g, fx, xin);
  const double loss = caption_nll(logp.t, fx.caps.data(), g.cfg.pad, 0.1);
  const double ref = npy::load(gdir + "nll.loss.npy").as<double>()[0];
  INFO("caption loss " << loss << " vs " << ref);
  CHECK(std::abs(loss - ref) <= 1e-5 * std::abs(ref));
  tp.backward();
  tensor_file grads(gdir + "nll.grads.gguf");
  int n = 0;
  nn::for_each_param(g, "model.56", [&](const std::string& name, param& p) {
    if (!grads.has(name)) return;
    const auto r = grads.get(name);
    REQUIRE(std::int64_t(r.size()) == p.numel());
    check_close(p.grad.data(), r.data(), p.numel(), 1e-3, 0.0, "NLL grad " + name);
    ++n;
  });
  CHECK(n == 7);
  for (int i = 0; i < 5; ++i) {
    const auto r = grads.get(grit_fixture::names[i]);
    const auto d = flat(xin[std::size_t(i)].t.grad());
    check_close(d.data(), r.data(), std::int64_t(r.size()), 1e-3, 0.0, std::string("NLL input gradient ") + grit_fixture::names[i]);
  }
}

TEST_CASE("grit train: gradients accumulate across backward passes; reference backend agrees", "[train][grit]") {
  grit_fixture fx;
  auto proj = load4(gdir + "proj.npy");
  // cpu, twice without zeroing: every gradient doubles
  context<cpu> ctx(2);
  grit_train<cpu> g;
  load_grit(g);
  nn::zero_grad(g);
  std::vector<std::vector<float>> once;
  for (int pass = 0; pass < 2; ++pass) {
    tape<cpu> tp(ctx);
    std::array<tvar, 5> xin;
    auto logp = run(tp, g, fx, xin);
    std::copy(proj.data(), proj.data() + proj.numel(), logp.t.gdata);
    tp.backward();
    if (pass == 0) nn::for_each_param(g, "", [&](const std::string&, param& p) { once.push_back(p.grad); });
  }
  std::size_t i = 0;
  nn::for_each_param(g, "", [&](const std::string& n, param& p) {
    std::vector<float> twice(once[i].size());
    for (std::size_t j = 0; j < twice.size(); ++j) twice[j] = 2 * once[i][j];
    check_close(p.grad.data(), twice.data(), p.numel(), 1e-5, 1e-7, "accumulated " + n);
    ++i;
  });
  // reference backend (reference convs) gives the same first-pass gradients
  context<reference> rctx(1);
  grit_train<reference> gr;
  load_grit(gr);
  nn::zero_grad(gr);
  tape<reference> tp(rctx);
  std::array<tvar, 5> xin;
  auto logp = run(tp, gr, fx, xin);
  std::copy(proj.data(), proj.data() + proj.numel(), logp.t.gdata);
  tp.backward();
  double gmax = 0;
  for (auto& v : once)
    for (float x : v) gmax = std::max(gmax, double(std::abs(x)));
  i = 0;
  nn::for_each_param(gr, "", [&](const std::string& n, param& p) {
    // floor: the analytically-zero fc_k biases are float rounding noise in both
    check_close(p.grad.data(), once[i].data(), p.numel(), 1e-4, 1e-7 * gmax, "reference vs cpu " + n);
    ++i;
  });
}

TEST_CASE("grit train: dropout option (seeded, train mode only)", "[train][grit]") {
  grit_fixture fx;
  context<cpu> ctx(2);
  auto run_with = [&](double p, std::uint64_t seed, bool training) {
    grit_train<cpu> g;
    load_grit(g);
    g.set_dropout(p, seed);
    tape<cpu> tp(ctx);
    tp.training = training;
    std::array<tvar, 5> xin;
    return flat(run(tp, g, fx, xin).t.val());
  };
  const auto off = run_with(0.0, 1, true), a = run_with(0.2, 7, true), b = run_with(0.2, 7, true), c = run_with(0.2, 8, true);
  CHECK(a == b);  // same seed, same masks
  CHECK(a != off);
  CHECK(a != c);
  for (float v : a) CHECK(std::isfinite(v));
  CHECK(run_with(0.2, 7, false) == run_with(0.0, 7, false));  // eval: no dropout
}

TEST_CASE("grit train: eval-mode teacher forcing equals the inference decoder step by step", "[train][grit]") {
  // The train module in eval mode (BN running statistics, no dropout) against the inference head
  // (layers/grit.hpp, folded BN, parity-tested against upstream's beam search) loaded from the
  // train module's own tensors: row t of the teacher-forced log-probs is the decoder's step t fed
  // with caps[:, t] (causal self-attention). PAD inputs output uniform log-probs in both.
  grit_fixture fx;
  context<cpu> ctx(2);
  grit_train<cpu> g;
  load_grit(g);
  tape<cpu> tp(ctx);
  tp.training = false;
  std::array<tvar, 5> xin;
  auto logp = run(tp, g, fx, xin);
  // the inference form of this very module (nn::fold, as grit_head::load does after reading)
  const auto h = nn::fold<grit_head<cpu>>(g);
  REQUIRE(h.loaded());
  grit_inputs in;
  in.x17 = fx.x[0].cv();
  in.x20 = fx.x[1].cv();
  in.x23 = fx.x[2].cv();
  in.x11 = fx.x[3].cv();
  in.x44 = fx.x[4].cv();
  for (int l = 0; l < 3; ++l) in.d3[std::size_t(l)] = fx.d3[std::size_t(l)].cv();
  in.semantic = fx.s2.cv();
  const int Bn = fx.x[0].shape().n, V = g.cfg.vocab_size, L = fx.L;
  std::vector<grit_tokens> toks;
  for (int i = 0; i < Bn; ++i) toks.push_back(h.encode(ctx, in, i));
  typename grit_head<cpu>::decoder dec(h, ctx, toks);
  std::vector<float> lp(std::size_t(Bn) * V);
  std::vector<std::int64_t> w(static_cast<std::size_t>(Bn));
  std::vector<unsigned char> active(std::size_t(Bn), 1);
  double md = 0, mr = 0;
  for (int t = 0; t < std::min(L, g.cfg.beam_len); ++t) {
    for (int b = 0; b < Bn; ++b) w[std::size_t(b)] = fx.caps[std::size_t(b * L + t)];
    dec.step(t, 1, w, active, lp.data());
    for (int b = 0; b < Bn; ++b)
      for (int v = 0; v < V; ++v) {
        const double a = logp.t.channel(b, t)[v], r = lp[std::size_t(b * V + v)];
        md = std::max(md, std::abs(a - r));
        mr = std::max(mr, std::abs(r));
      }
  }
  INFO("eval teacher forcing vs inference decoder: max|diff| " << md << ", max|ref| " << mr);
  CHECK(md <= 1e-4 * mr);
}

TEST_CASE("grit train: grid key mask (upstream gri_mask from src_mask)", "[train][grit]") {
  grit_fixture fx;
  context<cpu> ctx(2);
  grit_train<cpu> g;
  load_grit(g);
  const int Bn = fx.x[3].shape().n, h = fx.x[3].shape().h, w = fx.x[3].shape().w, ng = h * w;
  // src_mask [H, W] of a 128 x 160 image whose bottom rows and right columns are padding
  const int H = 128, W = 160;
  std::vector<unsigned char> src(std::size_t(H) * W, 0);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) src[std::size_t(y) * W + x] = y >= 96 || x >= 130;
  const auto m1 = grit_grid_mask(src.data(), H, W, h, w);
  REQUIRE(m1.size() == std::size_t(ng));
  int masked = 0;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      CHECK(m1[std::size_t(y * w + x)] == (y * 32 >= 96 || x * 32 >= 130));  // nearest: src = dst * 32
      masked += m1[std::size_t(y * w + x)];
    }
  REQUIRE((masked > 0 && masked < ng));
  auto run_mask = [&](const unsigned char* m) {
    tape<cpu> tp(ctx);
    std::array<tvar, 5> xin;
    for (int i = 0; i < 5; ++i) xin[std::size_t(i)] = tp.input(fx.x[std::size_t(i)].cv(), true);
    auto in = grit_train_inputs{};
    in.x17 = xin[0].t, in.x20 = xin[1].t, in.x23 = xin[2].t, in.x11 = xin[3].t, in.x44 = xin[4].t;
    for (int l = 0; l < 3; ++l) in.d3[std::size_t(l)] = fx.d3[std::size_t(l)].cv();
    in.semantic = fx.s2.cv();
    in.caps = fx.caps.data();
    in.seq_len = fx.L;
    in.grid_mask = m;
    return flat(g.forward(tp, in).t.val());
  };
  const auto none = run_mask(nullptr);
  std::vector<unsigned char> zeros(std::size_t(Bn) * ng, 0), some(std::size_t(Bn) * ng, 0);
  std::copy(m1.begin(), m1.end(), some.begin() + ng);  // image 1 padded, image 0 not
  CHECK(run_mask(zeros.data()) == none);
  const auto masked_out = run_mask(some.data());
  const int L = fx.L, V = g.cfg.vocab_size;
  bool img0_same = true, img1_differs = false;
  for (int i = 0; i < L * V; ++i) {
    img0_same = img0_same && masked_out[std::size_t(i)] == none[std::size_t(i)];
    img1_differs = img1_differs || masked_out[std::size_t(L * V + i)] != none[std::size_t(L * V + i)];
  }
  CHECK(img0_same);
  CHECK(img1_differs);
}

TEST_CASE("grit train: on top of the train-mode vision graph (from_vision, gradients reach the trunk)", "[train][grit]") {
  // the whole network as one module: train_model (layers 1-55, Grit as child "56"), one load
  context<cpu> ctx(2);
  train_model<cpu> m;
  m.init(gyolo_tiny::value, tiny_config());
  {
    gguf::file wf(wpath);
    gguf_weights ws(wf);
    nn::load_tensors(m, ws, "model");
  }
  grit_train<cpu> g;
  load_grit(g);
  {  // the same Grit weights as the stand-alone head's
    nn::module_weights a, b;
    a.add(m.grit, "model.56");
    b.add(g, "model.56");
    REQUIRE(a.order() == b.order());
    for (const auto& n : a.order()) CHECK(a.values(n) == b.values(n));
  }
  tensor<float> x({2, 3, 128, 160});
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = float((i * 7919) % 1000) / 1000.0f;
  tape<cpu> tp(ctx);
  auto in = tp.input(x.cv(), true);
  nn::zero_grad(m);
  const std::vector<std::int64_t> caps{2, 17, 45, 9, 3, 2, 88, 3, 0, 0};
  auto out = m.forward(tp, in.t, caps.data(), 5);
  const auto& logp = out.logp;
  REQUIRE(logp.shape() == shape4{2, 5, 1, m.grit.cfg.vocab_size});
  const double loss = caption_nll(logp.t, caps.data(), m.grit.cfg.pad, 0.1);
  CHECK(std::isfinite(loss));
  tp.backward();
  auto nonzero = [](const std::vector<float>& v) {
    for (float f : v)
      if (f != 0.0f) return true;
    return false;
  };
  // the caption loss reaches the trunk (through x17/x20/x23/x11/x44) but not the one-to-one head
  // (d3 is detached) nor the semantic head (s2 is detached); Grit's own parameters get gradients
  int n56 = 0;
  nn::for_each_param(m, "model", [&](const std::string& n, param& p) {
    if (n.rfind("model.1.", 0) == 0 || n.rfind("model.11.", 0) == 0 || n.rfind("model.43.", 0) == 0) {
      INFO(n);
      CHECK(nonzero(p.grad));
    }
    if (n.rfind("model.55.cv6.", 0) == 0 || n.rfind("model.55.cv7.", 0) == 0 || n.rfind("model.55.uconv2.", 0) == 0) {
      INFO(n);
      CHECK(!nonzero(p.grad));
    }
    if (n == "model.56.grit_transformer.cap_generator.fc.weight" || n == "model.56.cv3.0.0.conv.weight") {
      INFO(n);
      CHECK(nonzero(p.grad));
      ++n56;
    }
  });
  CHECK(n56 == 2);
  CHECK(nonzero(flat(in.t.grad())));
}

}  // namespace test_grit_train
