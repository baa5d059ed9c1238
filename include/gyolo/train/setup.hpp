// What a new training run starts from (gyolo train without --weights): the built-in variants
// (--variant), their caption head, and the vocabulary (upstream's, or the subset the captions use).
#pragma once
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gyolo/core/error.hpp"
#include "gyolo/data/dataset.hpp"
#include "gyolo/layers/grit_config.hpp"
#include "gyolo/model/config.hpp"
#include "gyolo/text/tokenize.hpp"
#include "gyolo/train/checkpoint.hpp"

namespace gyolo::train {

/// The built-in variants: the layer widths, with nc and the semantic channels from the data.
inline variant_config variant_named(const std::string& n, int nc, int sem_nc) {
  variant_config v;
  if (n == "gyolo") v = gyolo_c::value;
  else if (n == "tiny") v = gyolo_tiny::value;
  else if (n == "nano") v = nano_variant(nc, sem_nc);
  else if (n.rfind("scaled:", 0) == 0) {
    double w = 0;
    try {
      w = std::stod(n.substr(7));
    } catch (...) {
    }
    if (!(w > 0 && w <= 4)) throw error("--variant scaled:W wants a width multiple in (0, 4], got '" + n + "'");
    v = scaled_gyolo(w, nc);
  } else {
    throw error("--variant '" + n + "' is not one of tiny, nano, gyolo, scaled:W");
  }
  v.nc = nc;
  v.sem_nc = sem_nc;
  return v;
}

/// The caption head of the built-in variants: the official one for gyolo, a narrow one for the
/// small variants (their features are narrow too).
inline grit_config grit_for(const std::string& variant, const variant_config& v, int vocab_size) {
  grit_config g;
  if (variant != "gyolo" && variant.rfind("scaled:", 0) != 0) {
    g.d_model = 128;
    g.n_heads = 4;
    g.d_ff = 256;
  }
  g.grid_feat_dim = std::max(v.psa, 128);  // Grit: the grid features are max(ch[-3], 128) wide
  g.vocab_size = vocab_size;
  return g;
}

/// A vocabulary file: one token per line (upstream's data/vocab.txt).
inline std::vector<std::string> read_vocab(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw error("cannot read vocabulary '" + path + "'");
  std::vector<std::string> v;
  std::string l;
  while (std::getline(f, l)) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    v.push_back(l);
  }
  while (!v.empty() && v.back().empty()) v.pop_back();
  return v;
}

/// The special tokens (the vocabulary's first five: [PAD] [UNK] [CLS] [SEP] [MASK], so that the
/// caption head's pad/bos/eos ids stay 0/2/3) and every token the captions of `caps_json` use, in
/// the vocabulary's order.
inline std::vector<std::string> vocab_subset(const std::vector<std::string>& vocab, const std::filesystem::path& caps_json) {
  if (vocab.size() < 5 || vocab[0] != "[PAD]" || vocab[2] != "[CLS]" || vocab[3] != "[SEP]")
    throw error("--vocab-subset needs a vocabulary that starts [PAD] [UNK] [CLS] [SEP] [MASK] (upstream's)");
  const caption_tokenizer tok(vocab);
  std::vector<char> used(vocab.size(), 0);
  for (int i = 0; i < 5; ++i) used[std::size_t(i)] = 1;
  for (const auto& a : data::read_captions(caps_json))
    for (auto id : tok.tokens(a.caption)) used[std::size_t(id)] = 1;
  std::vector<std::string> v;
  for (std::size_t i = 0; i < vocab.size(); ++i)
    if (used[i]) v.push_back(vocab[i]);
  return v;
}

/// The description of a new model for the data `cfg`: variant `variant` (tiny, nano, gyolo,
/// scaled:W) with the data's classes and stuff channels, its caption head, and `vocab` (or, with
/// `subset`, the special tokens and the tokens the train captions use).
inline model_info new_model_info(const data::data_config& cfg, const std::string& variant, std::vector<std::string> vocab, bool subset) {
  model_info info;
  info.vocab = subset ? vocab_subset(vocab, cfg.train.captions_json) : std::move(vocab);
  info.variant = variant_named(variant, cfg.nc, int(cfg.stuff_names.size()));
  info.grit = grit_for(variant, info.variant, int(info.vocab.size()));
  info.names = cfg.names;
  info.stuff_names = cfg.stuff_names;
  info.name = "gyolo-" + variant;
  return info;
}

}  // namespace gyolo::train
