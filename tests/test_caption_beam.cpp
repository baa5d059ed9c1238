// Beam-search bookkeeping with synthetic scorers: gyolo::beam_search (fast top-k, inactive finished
// rows, state reordering through the scorer) against a literal transcription of upstream's
// Transformer.iter/select (float masks, full candidate arrays, full torch-order sort), including
// tie-heavy distributions, EOS-heavy ones and PAD picked as a word. Plus hand-made scenarios.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "gyolo/text/beam_search.hpp"

// (each test file in its own namespace: the tests are also compiled as a unity build)
namespace test_caption_beam {

using namespace gyolo;

namespace {

std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// Next-word log-probs as a pure function of the row's input history.
struct synthetic_lm {
  int V = 20;
  int levels = 0;          // > 0: logits quantised to this many levels (many exact ties)
  float eos_bias = 0, pad_bias = 0;
  std::uint64_t seed = 1;
  void operator()(const std::vector<std::int64_t>& hist, float* logp) const {
    std::uint64_t h = seed;
    for (auto w : hist) h = mix(h ^ std::uint64_t(w + 7));
    std::vector<float> lg(static_cast<std::size_t>(V));
    float mx = -1e30f;
    for (int w = 0; w < V; ++w) {
      const double u = double(mix(h + std::uint64_t(w)) >> 11) * 0x1.0p-53;
      lg[std::size_t(w)] = levels ? float(std::floor(u * levels)) : float(u * 6.0);
      if (w == 3) lg[std::size_t(w)] += eos_bias;
      if (w == 0) lg[std::size_t(w)] += pad_bias;
      mx = std::max(mx, lg[std::size_t(w)]);
    }
    float s = 0;
    for (int w = 0; w < V; ++w) s += std::exp(lg[std::size_t(w)] - mx);
    const float ls = std::log(s);
    for (int w = 0; w < V; ++w) logp[w] = lg[std::size_t(w)] - mx - ls;
  }
};

/// A stateful scorer over synthetic_lm: keeps each row's history, reordered like the decoder's cache.
struct history_scorer {
  synthetic_lm lm;
  int V;
  std::vector<std::vector<std::int64_t>> hist;
  int steps = 0, scored_rows = 0;
  void step(int t, int rows_per_image, std::span<const std::int64_t> in, std::span<const unsigned char> active, float* logp) {
    if (t == 0) hist.assign(in.size(), {});
    REQUIRE(hist.size() == in.size());
    REQUIRE(int(in.size()) % rows_per_image == 0);
    for (std::size_t r = 0; r < in.size(); ++r) {
      hist[r].push_back(in[r]);
      if (active[r]) {
        lm(hist[r], logp + r * std::size_t(V));
        ++scored_rows;
      } else {
        for (int w = 0; w < V; ++w) logp[r * std::size_t(V) + std::size_t(w)] = std::nanf("");  // must not be read
      }
    }
    ++steps;
  }
  void reorder(std::span<const int> src) {
    std::vector<std::vector<std::int64_t>> h(src.size());
    for (std::size_t r = 0; r < src.size(); ++r) h[r] = hist[std::size_t(src[r])];
    hist = std::move(h);
  }
};

/// Upstream's Transformer.iter + select + final sort, transcribed literally (float arithmetic).
std::vector<beam_hypothesis> upstream_beam(const synthetic_lm& lm, int n_images, const beam_params& p) {
  const int K = p.beam_size, V = lm.V;
  std::vector<beam_hypothesis> res;
  for (int i = 0; i < n_images; ++i) {
    synthetic_lm m = lm;
    m.seed = lm.seed;  // each image sees the same model; histories differ only through the search
    std::vector<std::vector<std::int64_t>> hist{{}};  // inputs fed per beam
    std::vector<float> seq_logprob{0.f}, seq_mask(std::size_t(K), 1.f);
    std::vector<std::vector<std::int64_t>> outputs{{}};
    std::vector<std::vector<float>> log_probs{{}};
    std::vector<std::int64_t> selected{p.bos};
    for (int t = 0; t < p.max_len; ++t) {
      const int cur = t == 0 ? 1 : K;
      std::vector<float> word(std::size_t(cur) * V), cand(word.size());
      for (int b = 0; b < cur; ++b) {
        hist[std::size_t(b)].push_back(selected[std::size_t(b)]);
        m(hist[std::size_t(b)], word.data() + std::size_t(b) * V);
        for (int w = 0; w < V; ++w) cand[std::size_t(b) * V + w] = seq_logprob[std::size_t(b)] + word[std::size_t(b) * V + w];
      }
      if (t > 0)
        for (int b = 0; b < cur; ++b) {
          const float mask = selected[std::size_t(b)] != p.eos ? 1.f : 0.f;
          seq_mask[std::size_t(b)] *= mask;
          const float sm = seq_mask[std::size_t(b)];
          for (int w = 0; w < V; ++w) {
            float& wl = word[std::size_t(b) * V + w];
            wl = wl * sm;
            const float old = w == 0 ? seq_logprob[std::size_t(b)] : -999.f;
            float& c = cand[std::size_t(b) * V + w];
            c = sm * c + old * (1.f - sm);
          }
        }
      std::vector<torch_order::elem> work;
      std::vector<std::int64_t> order;
      torch_order::sort_desc(cand, work, order);
      std::vector<std::vector<std::int64_t>> nh, no;
      std::vector<std::vector<float>> nl;
      std::vector<float> ns, nm;
      std::vector<std::int64_t> nsel;
      for (int k = 0; k < K; ++k) {
        const std::int64_t idx = order[std::size_t(k)];
        const int b = int(idx / V), w = int(idx - std::int64_t(b) * V);
        nh.push_back(hist[std::size_t(b)]);
        no.push_back(outputs[std::size_t(b)]);
        no.back().push_back(w);
        nl.push_back(log_probs[std::size_t(b)]);
        nl.back().push_back(word[std::size_t(b) * V + w]);
        ns.push_back(cand[std::size_t(idx)]);
        nm.push_back(seq_mask[std::size_t(b)]);
        nsel.push_back(w);
      }
      hist = nh, outputs = no, log_probs = nl, seq_logprob = ns, seq_mask = nm, selected = nsel;
    }
    std::vector<torch_order::elem> work;
    std::vector<std::int64_t> order;
    torch_order::sort_desc(seq_logprob, work, order);
    const auto b = std::size_t(order[0]);
    res.push_back({outputs[b], log_probs[b], seq_logprob[b]});
  }
  return res;
}

void require_same(const std::vector<beam_hypothesis>& a, const std::vector<beam_hypothesis>& b) {
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    REQUIRE(a[i].tokens == b[i].tokens);
    REQUIRE(a[i].log_probs.size() == b[i].log_probs.size());
    for (std::size_t t = 0; t < a[i].log_probs.size(); ++t) REQUIRE(a[i].log_probs[t] == b[i].log_probs[t]);  // +-0 compare equal
    REQUIRE(a[i].score == b[i].score);
  }
}

/// Different images see different models: wrap the seed per image through the first input.
struct multi_image_scorer {
  std::vector<history_scorer> per;  // one per image
  int V;
  std::vector<float> buf;
  void step(int t, int rows, std::span<const std::int64_t> in, std::span<const unsigned char> act, float* logp) {
    for (std::size_t i = 0; i < per.size(); ++i)
      per[i].step(t, rows, in.subspan(i * std::size_t(rows), std::size_t(rows)), act.subspan(i * std::size_t(rows), std::size_t(rows)),
                  logp + i * std::size_t(rows) * V);
  }
  void reorder(std::span<const int> src) {
    const std::size_t K = src.size() / per.size();
    for (std::size_t i = 0; i < per.size(); ++i) {
      std::vector<int> s(K);
      const int base = per[i].hist.size() == K ? int(i * K) : int(i);  // previous layout: 1 row per image at t = 0
      for (std::size_t k = 0; k < K; ++k) s[k] = src[i * K + k] - base;
      per[i].reorder(s);
    }
  }
};

}  // namespace

TEST_CASE("beam search equals upstream's iter/select transcription", "[caption][beam]") {
  struct cfg { int V, levels; float eos, pad; int K, L; };
  const cfg cfgs[] = {{20, 0, 0, 0, 5, 20},    {20, 3, 0, 0, 5, 20},   {7, 2, 0, 0, 5, 12},  {50, 0, 2.5f, 0, 5, 20},
                      {50, 4, 2.f, 1.5f, 5, 20}, {12, 0, 1.f, 3.f, 5, 20}, {30, 2, 3.f, 2.f, 3, 9}, {6, 1, 0, 0, 5, 8},
                      {100, 0, 1.5f, 1.5f, 5, 20}};
  int n_eos_mid = 0, n_pad_word = 0;
  for (const auto& c : cfgs)
    for (std::uint64_t seed = 1; seed <= 12; ++seed) {
      synthetic_lm lm{c.V, c.levels, c.eos, c.pad, seed};
      const beam_params p{c.K, c.L, 2, 3, 0};
      const int n_images = 1 + int(seed % 3);
      multi_image_scorer ms;
      ms.V = c.V;
      std::vector<beam_hypothesis> ref;
      for (int i = 0; i < n_images; ++i) {
        synthetic_lm li = lm;
        li.seed = seed * 1000 + std::uint64_t(i);
        ms.per.push_back(history_scorer{li, c.V, {}, 0, 0});
        auto r = upstream_beam(li, 1, p);
        ref.push_back(r[0]);
      }
      auto got = beam_search(ms, n_images, c.V, p);
      INFO("V " << c.V << " levels " << c.levels << " eos " << c.eos << " pad " << c.pad << " seed " << seed);
      require_same(got, ref);
      for (auto& h : got) {
        auto it = std::find(h.tokens.begin(), h.tokens.end(), 3);
        if (it != h.tokens.end() && it + 1 != h.tokens.end()) ++n_eos_mid;
        for (std::size_t t = 0; t + 1 < h.tokens.size(); ++t)
          if (h.tokens[t] == 0 && (t == 0 || h.tokens[t - 1] != 3) && std::find(h.tokens.begin(), h.tokens.begin() + t, 3) == h.tokens.begin() + t) ++n_pad_word;
      }
    }
  // the configurations do exercise early EOS and PAD chosen as a word by a live beam
  REQUIRE(n_eos_mid > 5);
  REQUIRE(n_pad_word > 0);
}

TEST_CASE("beam search: EOS ends a beam, PAD follows with log-prob 0 and the score is kept", "[caption][beam]") {
  // Word 5 then word 6 are the best; at step 2 EOS dominates (spec §6.6's measured example).
  struct forced {
    int V = 10;
    void step(int t, int, std::span<const std::int64_t> in, std::span<const unsigned char> act, float* logp) {
      for (std::size_t r = 0; r < in.size(); ++r) {
        if (!act[r]) continue;
        float* l = logp + r * std::size_t(V);
        for (int w = 0; w < V; ++w) l[w] = -10.f - float(w) * 0.01f - float(r) * 0.001f;
        if (t < 2) l[5 + t] = -0.1f;
        else l[3] = -0.2f;
      }
    }
    void reorder(std::span<const int>) {}
  } s;
  const auto h = beam_search(s, 1, 10, beam_params{});
  const std::vector<std::int64_t> want{5, 6, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  REQUIRE(h[0].tokens == want);
  REQUIRE(h[0].log_probs[0] == -0.1f);
  REQUIRE(h[0].log_probs[1] == -0.1f);
  REQUIRE(h[0].log_probs[2] == -0.2f);
  for (int t = 3; t < 20; ++t) REQUIRE(h[0].log_probs[std::size_t(t)] == 0.f);
  REQUIRE(h[0].score == (-0.1f + -0.1f) + -0.2f);
}

TEST_CASE("beam search: a lower-ranked beam overtakes (re-ranking) and histories follow their beams", "[caption][beam]") {
  // Step 0: word 7 (-0.5) beats word 8 (-0.7). After 7 every word costs >= 2; after 8 word 9 costs 0.01.
  struct scorer {
    int V = 12;
    std::vector<std::int64_t> last;  // previous word per row, maintained through reorder
    void step(int t, int, std::span<const std::int64_t> in, std::span<const unsigned char> act, float* logp) {
      last.assign(in.begin(), in.end());
      for (std::size_t r = 0; r < in.size(); ++r) {
        if (!act[r]) continue;
        float* l = logp + r * std::size_t(V);
        for (int w = 0; w < V; ++w) l[w] = -5.f - 0.01f * float(w);
        if (t == 0) { l[7] = -0.5f; l[8] = -0.7f; }
        else if (in[r] == 7) { for (int w = 0; w < V; ++w) l[w] = -2.f - 0.01f * float(w); }
        else if (in[r] == 8) l[9] = -0.01f;
        else if (in[r] == 9) l[3] = -0.05f;
      }
    }
    void reorder(std::span<const int>) {}
  } s;
  const auto h = beam_search(s, 1, 12, beam_params{});
  REQUIRE(h[0].tokens[0] == 8);
  REQUIRE(h[0].tokens[1] == 9);
  REQUIRE(h[0].tokens[2] == 3);
  REQUIRE(h[0].tokens[3] == 0);
  REQUIRE(h[0].score == (-0.7f + -0.01f) + -0.05f);
}

TEST_CASE("beam search: ties resolve in torch.sort's CPU order", "[caption][beam]") {
  // Uniform distributions: every candidate ties within a beam. The selection must follow
  // torch_order::sort_desc (libstdc++ std::sort with torch's comparator), not index order.
  struct flat {
    int V = 40;
    void step(int, int, std::span<const std::int64_t> in, std::span<const unsigned char> act, float* logp) {
      for (std::size_t r = 0; r < in.size(); ++r)
        if (act[r])
          for (int w = 0; w < V; ++w) logp[r * std::size_t(V) + std::size_t(w)] = -std::log(40.f);
    }
    void reorder(std::span<const int>) {}
  } s;
  const beam_params p{5, 3, 2, 3, 0};
  const auto h = beam_search(s, 1, 40, p);
  synthetic_lm uniform{40, 1, 0, 0, 1};  // one level: every logit equal
  require_same(h, upstream_beam(uniform, 1, p));
  std::vector<float> cand(40, -std::log(40.f));
  std::vector<torch_order::elem> work;
  std::vector<std::int64_t> order;
  torch_order::sort_desc(cand, work, order);
  REQUIRE(h[0].tokens[0] != 0);  // not index order: std::sort's tie order (see ties fixture test)
  // the fast prefix path must fall back to the full sort on ties
  std::vector<std::int64_t> pre;
  torch_order::sort_desc_prefix(cand, 5, work, pre);
  REQUIRE(std::vector<std::int64_t>(order.begin(), order.begin() + 5) == pre);
}

TEST_CASE("torch-order prefix: fast path equals the full sort", "[caption][beam]") {
  std::vector<torch_order::elem> work;
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    const int n = 1 + int(mix(seed) % 3000), levels = int(mix(seed + 99) % 6);  // 0: continuous
    std::vector<float> v(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      const double u = double(mix(seed * 7919 + std::uint64_t(i)) >> 11) * 0x1.0p-53;
      v[std::size_t(i)] = levels ? float(std::floor(u * levels)) : float(u);
    }
    if (seed % 17 == 0) v[std::size_t(n / 2)] = std::nanf("");
    const int m = std::min(n, 5);
    std::vector<std::int64_t> full, pre;
    torch_order::sort_desc(v, work, full);
    torch_order::sort_desc_prefix(v, m, work, pre);
    REQUIRE(std::vector<std::int64_t>(full.begin(), full.begin() + m) == pre);
  }
}

}  // namespace test_caption_beam
