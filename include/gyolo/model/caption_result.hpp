// What the caption head returns per image.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gyolo {

struct caption_result {
  std::string text;                       // detokenized, capitalized (upstream's decode)
  std::vector<std::int64_t> tokens;       // beam_len ids (20), PAD (0) after EOS, BOS not included
  std::vector<float> token_log_probs;     // per-token log-probabilities (0 after EOS)
  float log_prob = 0;                     // the best beam's accumulated score
};

}  // namespace gyolo
