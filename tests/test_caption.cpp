// Caption head (Grit, layer 56) parity with upstream, from fixtures made by
// weights_tools/make_caption_fixtures.py (tests/fixtures/caption/): the committed tiny model
// (tests/fixtures/tiny/tiny.gguf) with a few tensors overridden as listed in manifest.json
// (peaked word distribution, EOS/PAD-prone logits, sharper cross-attention).
//  - torch tie order of sort / topk / max(dim) on tie-heavy vectors;
//  - per stage at 128x128 from upstream's own Grit inputs: region tokens, cv4 features, grid_net,
//    the decoder's step-0 and step-1 log-probs, the whole beam search;
//  - end to end from the image at 128x128, 160x128 (batch of 2) and 128x192: region indices,
//    semantic arg-max positions, tokens (identical), log-probs (1e-3), text;
//  - the tiny fixture of make_fixtures.py (caption_128, unmodified weights);
//  - API behaviour (has_caption, load options, errors).
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "gyolo/gyolo.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_caption {

using namespace gyolo;

namespace {
const std::string cdir = std::string(GYOLO_FIXTURES_DIR) + "/caption/";
const std::string tdir = std::string(GYOLO_FIXTURES_DIR) + "/tiny/";

const nlohmann::json& manifest() {
  static const nlohmann::json j = [] {
    std::ifstream f(cdir + "manifest.json");
    REQUIRE(f.good());
    return nlohmann::json::parse(f);
  }();
  return j;
}

std::vector<float> f32(const std::string& name, std::vector<std::int64_t>* shape = nullptr) {
  auto a = npy::load(cdir + name + ".npy");
  if (shape) *shape = a.shape;
  return a.as<float>();
}
std::vector<std::int64_t> i64(const std::string& name) { return npy::load(cdir + name + ".npy").as<std::int64_t>(); }

tensor<float> t4(const std::string& name) {
  std::vector<std::int64_t> s;
  auto v = f32(name, &s);
  REQUIRE(s.size() == 4);
  tensor<float> t({int(s[0]), int(s[1]), int(s[2]), int(s[3])});
  std::copy(v.begin(), v.end(), t.data());
  return t;
}

/// uint8 image batch / 255 (exactly the float input upstream saw).
tensor<float> image(const std::string& c) {
  auto a = npy::load(cdir + c + ".input_u8.npy");
  auto u = a.as<std::uint8_t>();
  tensor<float> t({int(a.shape[0]), int(a.shape[1]), int(a.shape[2]), int(a.shape[3])});
  for (std::size_t i = 0; i < u.size(); ++i) t[std::int64_t(i)] = float(u[i]) / 255.0f;
  return t;
}

load_options caption_options() {
  load_options o;
  for (auto& [name, file] : manifest().at("overrides").items()) o.tensor_overrides[name] = f32(file.get<std::string>());
  return o;
}

template <class B>
const model<B, gyolo_tiny>& caption_model() {
  static const auto m = model<B, gyolo_tiny>::load(tdir + "tiny.gguf", caption_options());
  return m;
}

double max_abs_diff(const float* a, const float* b, std::size_t n, double* ref_max = nullptr) {
  double md = 0, mr = 0;
  for (std::size_t i = 0; i < n; ++i) {
    md = std::max(md, double(std::abs(a[i] - b[i])));
    mr = std::max(mr, double(std::abs(b[i])));
  }
  if (ref_max) *ref_max = mr;
  return md;
}

void require_rel(const std::vector<float>& ours, const std::vector<float>& ref, double tol, const std::string& what) {
  REQUIRE(ours.size() == ref.size());
  double mr = 0;
  const double md = max_abs_diff(ours.data(), ref.data(), ref.size(), &mr);
  INFO(what << ": max|diff| " << md << " max|ref| " << mr);
  REQUIRE(mr > 0);
  REQUIRE(md <= tol * mr);
}

void require_caption(const caption_result& r, const std::vector<std::int64_t>& tokens, const float* logp, const std::string& what) {
  INFO(what);
  REQUIRE(r.tokens == tokens);
  REQUIRE(r.token_log_probs.size() == tokens.size());
  const double md = max_abs_diff(r.token_log_probs.data(), logp, tokens.size());
  INFO("max |log-prob diff| " << md);
  REQUIRE(md <= 1e-3);
  float sum = 0;
  for (float v : r.token_log_probs) sum += v;
  REQUIRE(r.log_prob == Approx(sum).margin(1e-3));
}

/// Two selections ranked by the same scores agree up to near-ties. Upstream's exact order there
/// hinges on the last bits of floats that every CPU kernel set computes differently, so: at
/// every position the two picks must be the same element, or elements whose scores differ by at
/// most `tol` (a swap of near-tied neighbours, or a near-tied element exchanged at the boundary of
/// a top-k). Where neighbours differ by more than tol this is the exact order.
void require_ranking(const std::vector<std::int64_t>& got, const std::vector<std::int64_t>& want,
                     const std::vector<float>& score, double tol, const std::string& what) {
  INFO(what);
  REQUIRE(got.size() == want.size());
  std::size_t differ = 0;
  for (std::size_t j = 0; j < got.size(); ++j) {
    if (got[j] == want[j]) continue;
    ++differ;
    REQUIRE(got[j] >= 0);
    REQUIRE(want[j] >= 0);
    REQUIRE(std::size_t(got[j]) < score.size());
    REQUIRE(std::size_t(want[j]) < score.size());
    const double d = std::abs(double(score[std::size_t(got[j])]) - double(score[std::size_t(want[j])]));
    INFO("position " << j << ": " << got[j] << " vs upstream's " << want[j] << ", scores differ by " << d);
    REQUIRE(d <= tol);
  }
  // near-ties are rare: a handful of positions at most
  REQUIRE(differ <= got.size() / 20);
}

/// Wraps a scorer and keeps the log-probs of the first steps.
template <class D>
struct recorder {
  D& d;
  int V;
  std::vector<std::vector<float>> steps;
  std::vector<std::vector<unsigned char>> active;  // rows the search runs (finished beams are not)
  void step(int t, int rows, std::span<const std::int64_t> in, std::span<const unsigned char> act, float* lp) {
    d.step(t, rows, in, act, lp);
    if (t < 2) {
      steps.emplace_back(lp, lp + in.size() * std::size_t(V));
      active.emplace_back(act.begin(), act.end());
    }
  }
  void reorder(std::span<const int> src) { d.reorder(src); }
};
}  // namespace

TEST_CASE("torch tie order: sort, topk and max(dim) reproduce torch's CPU results", "[caption][ties]") {
  const auto vals = f32("ties.values");
  const auto idx = i64("ties.index");
  const auto cases = i64("ties.cases");
  REQUIRE(cases.size() % 6 == 0);
  std::vector<torch_order::elem> work;
  int n_sort = 0, n_topk = 0, n_max = 0;
  for (std::size_t c = 0; c < cases.size(); c += 6) {
    const auto kind = cases[c], n = cases[c + 1], k = cases[c + 2], ov = cases[c + 3], oi = cases[c + 4], ni = cases[c + 5];
    std::span<const float> v(vals.data() + ov, std::size_t(n));
    std::vector<std::int64_t> want(idx.begin() + oi, idx.begin() + oi + ni), got;
    INFO("case kind " << kind << " n " << n << " k " << k);
    if (kind == 0) {
      torch_order::sort_desc(v, work, got);
      ++n_sort;
    } else if (kind == 1) {
      torch_order::topk_desc(v, int(k), work, got);
      ++n_topk;
    } else {  // max over dim 0 of an [n / k, k] array: as the semantic arg-max, channel = column
      const int rows = int(n / k), cols = int(k);
      tensor<float> t({1, cols, 1, rows});
      for (int r = 0; r < rows; ++r)
        for (int cc = 0; cc < cols; ++cc) t.v().at(0, cc, 0, r) = v[std::size_t(r * cols + cc)];
      got = grit_head<cpu>::semantic_argmax(t.cv(), 0);
      ++n_max;
    }
    REQUIRE(got == want);
  }
  REQUIRE(n_sort >= 5);
  REQUIRE(n_topk >= 5);
  REQUIRE(n_max >= 1);
}

TEMPLATE_TEST_CASE("caption head stages match upstream (128x128, upstream's own Grit inputs)", "[caption][parity]", cpu, reference) {
  using B = TestType;
  const auto& g = caption_model<B>().grit();
  context<B> ctx(2);
  const std::string c = "c128";
  auto x17 = t4(c + ".grit_in.x17"), x20 = t4(c + ".grit_in.x20"), x23 = t4(c + ".grit_in.x23"), x11 = t4(c + ".grit_in.x11"),
       x44 = t4(c + ".grit_in.x44");
  grit_inputs in{x17.cv(), x20.cv(), x23.cv(), x11.cv(), x44.cv(), {}, {}};
  const auto topk = i64(c + ".topk_index"), sem = i64(c + ".semantic_pos");

  SECTION("top-300 region indices from upstream's class maxima (exact, torch.topk order)") {
    std::vector<torch_order::elem> work;
    std::vector<std::int64_t> got;
    torch_order::topk_desc(f32(c + ".cls_max"), 300, work, got);
    REQUIRE(got == topk);
  }
  SECTION("region tokens: cv3 at the top-300 anchors, cv5 at the semantic arg-max positions") {
    require_rel(g.region_tokens(ctx, in, 0, topk, sem), f32(c + ".region_tokens"), 1e-5, "region tokens");
  }
  SECTION("grid features (cv4) and grid_net") {
    require_rel(g.grid_features(ctx, x11.cv(), 0), f32(c + ".grid_features"), 1e-5, "cv4");
    require_rel(g.grid_net(ctx, f32(c + ".grid_features")), f32(c + ".grid_out"), 1e-5, "grid_net");
  }
  SECTION("decoder: step-0 and step-1 log-probs, then the whole search") {
    std::vector<grit_tokens> toks(1);
    toks[0].grid = f32(c + ".grid_out");
    toks[0].region = f32(c + ".region_tokens");
    toks[0].n_grid = int(toks[0].grid.size() / 128);
    toks[0].n_region = int(toks[0].region.size() / 128);
    typename grit_head<B>::decoder dec(g, ctx, toks);
    recorder<typename grit_head<B>::decoder> rec{dec, g.cfg.vocab_size, {}};
    auto h = beam_search(rec, 1, g.cfg.vocab_size, g.search_params());
    REQUIRE(rec.steps.size() == 2);
    const auto l0 = f32(c + ".logp_step0"), l1 = f32(c + ".logp_step1");
    INFO("step 0 max|diff| " << max_abs_diff(rec.steps[0].data(), l0.data(), l0.size()));
    REQUIRE(max_abs_diff(rec.steps[0].data(), l0.data(), l0.size()) < 1e-4);
    // Step 1: compare the live beams' rows. A beam that chose EOS at step 0 is finished: upstream
    // still computes its row and then multiplies it by 0; gyolo does not compute it at all.
    const std::size_t V = std::size_t(g.cfg.vocab_size);
    int live = 0;
    for (std::size_t r = 0; r < rec.active[1].size(); ++r) {
      if (!rec.active[1][r]) continue;
      ++live;
      const double dr = max_abs_diff(rec.steps[1].data() + r * V, l1.data() + r * V, V);
      INFO("step 1 row " << r << " max|diff| " << dr);
      REQUIRE(dr < 1e-4);
    }
    REQUIRE(live >= 4);
    caption_result r{"", h[0].tokens, h[0].log_probs, h[0].score};
    require_caption(r, i64(c + ".tokens"), f32(c + ".logprobs").data(), "beam search from upstream's tokens");
  }
}

TEST_CASE("captions match upstream end to end at three input sizes", "[caption][parity]") {
  const auto& m = caption_model<cpu>();
  REQUIRE(m.has_caption());
  context<cpu> ctx(2);
  for (const char* c : {"c128", "c160x128_b2", "c128x192"}) {
    const std::string cs = c;
    auto x = image(cs);
    auto o = m.forward(ctx, x.cv(), {.caption_features = true});
    auto res = m.caption(ctx, o);
    const int n = x.shape().n;
    REQUIRE(int(res.size()) == n);
    const auto tokens = i64(cs + ".tokens"), topk = i64(cs + ".topk_index"), sem = i64(cs + ".semantic_pos");
    const auto logp = f32(cs + ".logprobs");
    const auto& texts = manifest().at("cases").at(cs).at("text");
    for (int i = 0; i < n; ++i) {
      INFO(cs << " image " << i);
      // The discrete choices the head makes from the vision outputs: upstream's, except between
      // elements whose scores are within the vision graph's tolerance of each other (1e-4 of the
      // largest score; the head outputs match upstream to about 1e-5 relative).
      const std::array<cview<float>, 3> d3{o.d3[0].cv(), o.d3[1].cv(), o.d3[2].cv()};
      const auto score = m.grit().region_scores(d3, i);
      double smax = 0;
      for (float v : score) smax = std::max(smax, double(std::abs(v)));
      require_ranking(m.grit().select_regions(d3, i), std::vector<std::int64_t>(topk.begin() + i * 300, topk.begin() + (i + 1) * 300),
                      score, 1e-4 * smax, "top-300 regions");
      // semantic arg-max: per channel, the value at our position equals the value at upstream's
      const auto pos = m.grit().semantic_argmax(o.semantic.cv(), i);
      for (int ch = 0; ch < o.semantic.shape().c; ++ch) {
        const float* p = o.semantic.cv().channel(i, ch);
        const std::int64_t a = pos[std::size_t(ch)], b = sem[std::size_t(i * 173 + ch)];
        if (a == b) continue;
        double cmax = 0;
        for (std::int64_t j = 0; j < o.semantic.cv().plane(); ++j) cmax = std::max(cmax, double(std::abs(p[j])));
        INFO("semantic channel " << ch << ": position " << a << " vs upstream's " << b);
        REQUIRE(std::abs(double(p[a]) - double(p[b])) <= 1e-4 * cmax);
      }
      require_caption(res[std::size_t(i)], std::vector<std::int64_t>(tokens.begin() + i * 20, tokens.begin() + (i + 1) * 20),
                      logp.data() + i * 20, cs);
      REQUIRE(res[std::size_t(i)].text == texts.at(std::size_t(i)).get<std::string>());
    }
    // batching changes nothing: each image alone gives the same caption
    if (n > 1) {
      auto o1 = m.forward(ctx, x.cv().batch(1), {.caption_features = true});
      auto r1 = m.caption(ctx, o1);
      REQUIRE(r1[0].tokens == res[1].tokens);
    }
  }
}

TEST_CASE("cpu and reference backends give the same caption", "[caption][parity]") {
  auto x = image("c128");
  context<cpu> cc(2);
  context<reference> rc(1);
  const auto& mc = caption_model<cpu>();
  const auto& mr = caption_model<reference>();
  auto a = mc.caption(cc, mc.forward(cc, x.cv(), {.caption_features = true}));
  auto b = mr.caption(rc, mr.forward(rc, x.cv(), {.caption_features = true}));
  REQUIRE(a[0].tokens == b[0].tokens);
  REQUIRE(max_abs_diff(a[0].token_log_probs.data(), b[0].token_log_probs.data(), 20) < 1e-4);
  REQUIRE(a[0].text == b[0].text);
}

TEST_CASE("caption of make_fixtures.py's tiny fixture (unmodified weights)", "[caption][parity]") {
  const auto m = model<cpu, gyolo_tiny>::load(tdir + "tiny.gguf");
  context<cpu> ctx(2);
  auto a = npy::load(tdir + "caption_128.input.npy");
  tensor<float> x({1, 3, 128, 128});
  auto v = a.as<float>();
  std::copy(v.begin(), v.end(), x.data());
  auto r = m.caption(ctx, m.forward(ctx, x.cv(), {.caption_features = true}));
  const auto tokens = npy::load(tdir + "caption_128.tokens.npy").as<std::int64_t>();
  const auto logp = npy::load(tdir + "caption_128.logprobs.npy").as<float>();
  require_caption(r[0], tokens, logp.data(), "caption_128");
}

TEST_CASE("caption API: has_caption, options and errors", "[caption]") {
  context<cpu> ctx(2);
  const auto& m = caption_model<cpu>();
  REQUIRE(m.has_caption());
  REQUIRE(m.vocab().size() == 100);
  REQUIRE(m.grit().cfg.d_model == 128);
  REQUIRE(m.grit().cfg.n_heads == 4);
  REQUIRE(m.grit().cfg.vocab_size == 100);

  load_options off;
  off.caption = false;
  const auto m2 = model<cpu, gyolo_tiny>::load(tdir + "tiny.gguf", off);
  REQUIRE_FALSE(m2.has_caption());
  auto x = image("c128");
  auto o = m2.forward(ctx, x.cv(), {.caption_features = true});
  REQUIRE_THROWS_WITH(m2.caption(ctx, o), Catch::Contains("no caption head"));

  auto o_nofeat = m.forward(ctx, x.cv());
  REQUIRE_THROWS_WITH(m.caption(ctx, o_nofeat), Catch::Contains("caption_features"));

  tensor<float> small({1, 3, 64, 64});
  small.zero();
  auto os = m.forward(ctx, small.cv(), {.caption_features = true});
  REQUIRE_THROWS_WITH(m.caption(ctx, os), Catch::Contains("at least 300 anchors"));

  load_options bad;
  bad.tensor_overrides["model.56.no.such.tensor"] = {1.f};
  REQUIRE_THROWS_WITH((model<cpu, gyolo_tiny>::load(tdir + "tiny.gguf", bad)), Catch::Contains("no.such.tensor"));
  load_options wrong;
  wrong.tensor_overrides["model.56.grit_transformer.cap_generator.fc.weight"] = {1.f, 2.f};
  REQUIRE_THROWS_WITH((model<cpu, gyolo_tiny>::load(tdir + "tiny.gguf", wrong)), Catch::Contains("has 2 values"));
}

}  // namespace test_caption
