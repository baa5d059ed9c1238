// Beam search exactly as upstream's GRIT Transformer.iter/select (models/grit.py), as run by
// caption/predict.py: beam_size 5, out_size 1, max_len 20, no length penalty.
//
// Per step t (rows_prev = 1 at t = 0, beam_size after):
//  - a beam whose previous word was EOS is finished: its candidate row is [score for token PAD,
//    -999 for every other token] (upstream: seq_mask * candidate + old_score * (1 - seq_mask) with
//    old_score[1:] = -999), so it can only be extended with PAD, keeping its score, and its
//    recorded per-token log-prob is 0;
//  - a live beam's candidates are score + log p(w | beam) in float32;
//  - the rows_prev x V candidates are flattened and sorted descending with torch.sort's CPU tie
//    order (see select_top), the first beam_size kept: beam = index / V, word = index % V;
//  - all per-beam state is reordered by the source beam (the scorer is told via reorder()).
// After max_len steps the beams are sorted by score (descending, torch tie order) and the best
// beam's tokens and per-token log-probs are returned.
//
// Tie order: upstream sorts with torch.sort (stable = False), which on CPU is libstdc++'s
// std::sort over (value, index) pairs with the comparator "a > b, NaN first"; torch.topk (region
// tokens) is std::nth_element + std::sort of the first k - 1 (or std::partial_sort when
// k * 64 <= n). These algorithms are deterministic given the comparator, so calling the same
// libstdc++ algorithms on the same sequence reproduces torch's order of equal values exactly.
// tests/test_caption.cpp checks this against torch-generated vectors. (With another standard
// library, equal values may come out in another order; distinct values are unaffected.)
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "gyolo/core/error.hpp"

namespace gyolo {

namespace torch_order {

using elem = std::pair<float, std::int64_t>;

/// torch's KeyValueCompDesc / topk comparator: NaN first, then larger values.
struct desc {
  bool operator()(const elem& a, const elem& b) const {
    return (std::isnan(a.first) && !std::isnan(b.first)) || (a.first > b.first);
  }
};

/// Indices of torch.sort(values, descending=True) on CPU (the whole permutation).
inline void sort_desc(std::span<const float> values, std::vector<elem>& work, std::vector<std::int64_t>& out) {
  work.resize(values.size());
  for (std::size_t i = 0; i < values.size(); ++i) work[i] = {values[i], std::int64_t(i)};
  std::sort(work.begin(), work.end(), desc{});
  out.resize(work.size());
  for (std::size_t i = 0; i < work.size(); ++i) out[i] = work[i].second;
}

/// Indices of torch.topk(values, k, largest=True, sorted=True) on CPU (aten TopKImpl.h).
inline void topk_desc(std::span<const float> values, int k, std::vector<elem>& work, std::vector<std::int64_t>& out) {
  const std::int64_t n = std::int64_t(values.size());
  GYOLO_CHECK(k >= 0 && k <= n, "topk: k = " + std::to_string(k) + " out of range for " + std::to_string(n) + " values");
  out.resize(static_cast<std::size_t>(k));
  if (k == 0) return;
  work.resize(values.size());
  for (std::int64_t i = 0; i < n; ++i) work[std::size_t(i)] = {values[std::size_t(i)], i};
  if (std::int64_t(k) * 64 <= n) {
    std::partial_sort(work.begin(), work.begin() + k, work.end(), desc{});
  } else {
    std::nth_element(work.begin(), work.begin() + (k - 1), work.end(), desc{});
    std::sort(work.begin(), work.begin() + (k - 1), desc{});
  }
  for (int i = 0; i < k; ++i) out[std::size_t(i)] = work[std::size_t(i)].second;
}

/// The first m indices of torch.sort(values, descending=True). When the m largest values are
/// distinct and strictly above every other value, any correct sort gives the same prefix, found
/// with one linear scan; otherwise (ties at the top, NaN) the full torch-order sort is run.
inline void sort_desc_prefix(std::span<const float> values, int m, std::vector<elem>& work, std::vector<std::int64_t>& out) {
  const std::size_t n = values.size();
  GYOLO_CHECK(m >= 0 && std::size_t(m) <= n, "sort prefix out of range");
  // Keep the m + 1 largest (value, index) in descending order (later equal values after earlier).
  const int keep = int(std::min<std::size_t>(std::size_t(m) + 1, n));
  elem top[17];
  bool slow = keep > 16;
  int cnt = 0;
  if (!slow)
    for (std::size_t i = 0; i < n; ++i) {
      const float v = values[i];
      if (std::isnan(v)) { slow = true; break; }
      if (cnt == keep && !(v >= top[keep - 1].first)) continue;
      int p = cnt < keep ? cnt++ : keep - 1;
      while (p > 0 && v > top[p - 1].first) { top[p] = top[p - 1]; --p; }
      top[p] = {v, std::int64_t(i)};
    }
  if (!slow)
    for (int i = 0; i + 1 < keep; ++i)
      if (!(top[i].first > top[i + 1].first)) { slow = true; break; }
  out.resize(static_cast<std::size_t>(m));
  if (!slow) {
    for (int i = 0; i < m; ++i) out[std::size_t(i)] = top[i].second;
    return;
  }
  std::vector<std::int64_t> all;
  sort_desc(values, work, all);
  std::copy(all.begin(), all.begin() + m, out.begin());
}

}  // namespace torch_order

struct beam_params {
  int beam_size = 5;
  int max_len = 20;
  std::int64_t bos = 2, eos = 3, pad = 0;
};

struct beam_hypothesis {
  std::vector<std::int64_t> tokens;   // max_len ids, BOS excluded, PAD after EOS
  std::vector<float> log_probs;       // per-token log-probs, 0 after EOS
  float score = 0;                    // accumulated log-prob
};

/// A scorer computes next-word log-probabilities for the rows of the current step and keeps its
/// own per-row state (e.g. the decoder's self-attention cache).
///  step(t, rows_per_image, inputs, active, logp): inputs[r] is row r's input word (BOS at t = 0);
///    only rows with active[r] != 0 need their V log-probs written to logp + r * V (the others are
///    finished beams, whose scores upstream discards).
///  reorder(src): the new row r continues previous row src[r] (n_images * beam_size rows).
template <class S>
concept beam_scorer = requires(S s, int t, std::span<const std::int64_t> in, std::span<const unsigned char> act,
                               float* lp, std::span<const int> src) {
  s.step(t, t, in, act, lp);
  s.reorder(src);
};

/// Runs the search for n_images independent images (rows are image-major).
template <beam_scorer Scorer>
std::vector<beam_hypothesis> beam_search(Scorer& scorer, int n_images, int vocab, const beam_params& p) {
  GYOLO_CHECK(n_images >= 0 && vocab > 0 && p.beam_size > 0 && p.max_len > 0, "beam_search: bad parameters");
  GYOLO_CHECK(std::int64_t(p.beam_size) <= vocab, "beam_search: beam larger than the vocabulary");
  const int K = p.beam_size, L = p.max_len, V = vocab;
  const int R = n_images * K;
  std::vector<float> logp(std::size_t(R) * V), cand(std::size_t(K) * V);
  std::vector<float> score(std::size_t(R), 0.f), nscore(static_cast<std::size_t>(R));
  std::vector<unsigned char> live(std::size_t(R), 1), nlive(static_cast<std::size_t>(R));
  std::vector<std::int64_t> words(std::size_t(R), p.bos), nwords(static_cast<std::size_t>(R));
  std::vector<std::int64_t> toks(std::size_t(R) * L, 0), ntoks(toks.size());
  std::vector<float> lps(std::size_t(R) * L, 0.f), nlps(lps.size());
  std::vector<int> src(static_cast<std::size_t>(R));
  std::vector<torch_order::elem> work;
  std::vector<std::int64_t> sel;

  for (int t = 0; t < L; ++t) {
    const int rows = t == 0 ? 1 : K;  // rows per image feeding this step
    const int nr = n_images * rows;
    if (t > 0)
      for (int r = 0; r < nr; ++r) live[r] = live[r] && words[r] != p.eos;
    scorer.step(t, rows, std::span<const std::int64_t>(words.data(), std::size_t(nr)),
                std::span<const unsigned char>(live.data(), std::size_t(nr)), logp.data());
    for (int i = 0; i < n_images; ++i) {
      for (int b = 0; b < rows; ++b) {
        const int r = i * rows + b;
        float* c = cand.data() + std::size_t(b) * V;
        const float* l = logp.data() + std::size_t(r) * V;
        if (live[r]) {
          for (int w = 0; w < V; ++w) c[w] = score[r] + l[w];
        } else {
          std::fill(c, c + V, -999.0f);
          c[p.pad] = score[r];
        }
      }
      torch_order::sort_desc_prefix(std::span<const float>(cand.data(), std::size_t(rows) * V), K, work, sel);
      for (int k = 0; k < K; ++k) {
        const std::int64_t idx = sel[std::size_t(k)];
        const int b = int(idx / V), w = int(idx - std::int64_t(b) * V);
        const int from = i * rows + b, to = i * K + k;
        src[to] = from;
        nscore[to] = cand[std::size_t(idx)];
        nlive[to] = live[from];
        nwords[to] = w;
        std::copy_n(toks.data() + std::size_t(from) * L, t, ntoks.data() + std::size_t(to) * L);
        std::copy_n(lps.data() + std::size_t(from) * L, t, nlps.data() + std::size_t(to) * L);
        ntoks[std::size_t(to) * L + t] = w;
        nlps[std::size_t(to) * L + t] = live[from] ? logp[std::size_t(from) * V + w] : 0.0f;
      }
    }
    scorer.reorder(std::span<const int>(src.data(), std::size_t(R)));
    std::swap(score, nscore);
    std::swap(live, nlive);
    std::swap(words, nwords);
    std::swap(toks, ntoks);
    std::swap(lps, nlps);
  }

  std::vector<beam_hypothesis> out(static_cast<std::size_t>(n_images));
  for (int i = 0; i < n_images; ++i) {
    std::vector<std::int64_t> order;
    torch_order::sort_desc(std::span<const float>(score.data() + std::size_t(i) * K, std::size_t(K)), work, order);
    const int r = i * K + int(order[0]);
    auto& h = out[std::size_t(i)];
    h.tokens.assign(toks.begin() + std::ptrdiff_t(r) * L, toks.begin() + std::ptrdiff_t(r + 1) * L);
    h.log_probs.assign(lps.begin() + std::ptrdiff_t(r) * L, lps.begin() + std::ptrdiff_t(r + 1) * L);
    h.score = score[std::size_t(r)];
  }
  return out;
}

}  // namespace gyolo
