// Full-size caption check and timing (hidden: run with `gyolo_tests "[.full-caption]"`).
// Needs the full random-weight reference of weights_tools/make_fixtures.py --variant full
// (default folder /tmp/full_ref, or $GYOLO_FULL_REF): gyolo_random.gguf, input.npy, tokens.npy,
// logprobs.npy. Timing: $GYOLO_THREADS (default 2) threads, $GYOLO_REPS (default 5) repetitions;
// see docs/caption.md.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "gyolo/gyolo.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_caption_full {

using namespace gyolo;

namespace {
int env_int(const char* k, int d) {
  const char* v = std::getenv(k);
  return v ? std::atoi(v) : d;
}
double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}
std::string summary(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  char b[160];
  std::snprintf(b, sizeof b, "min %.1f  median %.1f  max %.1f ms (n=%zu)", v.front(), v[v.size() / 2], v.back(), v.size());
  return b;
}
}  // namespace

TEST_CASE("full-size caption: parity with upstream and timing", "[.full-caption]") {
  const char* e = std::getenv("GYOLO_FULL_REF");
  const std::string dir = std::string(e ? e : "/tmp/full_ref") + "/";
  if (!std::filesystem::exists(dir + "gyolo_random.gguf")) {
    WARN("no full reference in " << dir << " (see docs/caption.md)");
    return;
  }
  const auto m = model<cpu, gyolo_c>::load(dir + "gyolo_random.gguf");
  REQUIRE(m.has_caption());
  auto a = npy::load(dir + "input.npy");
  tensor<float> x({int(a.shape[0]), int(a.shape[1]), int(a.shape[2]), int(a.shape[3])});
  auto v = a.as<float>();
  std::copy(v.begin(), v.end(), x.data());
  context<cpu> ctx(env_int("GYOLO_THREADS", 2));
  auto o = m.forward(ctx, x.cv(), {.caption_features = true});
  auto r = m.caption(ctx, o);
  const auto tokens = npy::load(dir + "tokens.npy").as<std::int64_t>();
  const auto logp = npy::load(dir + "logprobs.npy").as<float>();
  double md = 0;
  for (std::size_t t = 0; t < tokens.size(); ++t) md = std::max(md, double(std::abs(r[0].token_log_probs[t] - logp[t])));
  std::cout << "full-size caption, input " << x.shape().str() << "\n  tokens   ";
  for (auto t : r[0].tokens) std::cout << t << ' ';
  std::cout << "\n  upstream ";
  for (auto t : tokens) std::cout << t << ' ';
  std::cout << "\n  max |log-prob diff| " << md << "\n  text: \"" << r[0].text << "\"\n";
  REQUIRE(r[0].tokens == tokens);
  REQUIRE(md <= 1e-3);

  const int reps = env_int("GYOLO_REPS", 5);
  std::vector<double> total, enc, dec;
  grit_inputs in{o.x17.cv(), o.x20.cv(), o.x23.cv(), o.x11.cv(), o.x44.cv(), {o.d3[0].cv(), o.d3[1].cv(), o.d3[2].cv()}, o.semantic.cv()};
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    auto rr = m.caption(ctx, o);
    total.push_back(ms_since(t0));
    REQUIRE(rr[0].tokens == tokens);
    t0 = std::chrono::steady_clock::now();
    std::vector<grit_tokens> toks{m.grit().encode(ctx, in, 0)};
    enc.push_back(ms_since(t0));
    t0 = std::chrono::steady_clock::now();
    auto h = m.grit().generate(ctx, toks);
    dec.push_back(ms_since(t0));
  }
  std::cout << "  threads " << ctx.threads() << "\n  caption() total: " << summary(total) << "\n  encode (adapters, tokens, grid_net): "
            << summary(enc) << "\n  decode (beam search, 20 steps): " << summary(dec) << "\n";
}

}  // namespace test_caption_full
