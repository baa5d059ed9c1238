// Grit's hard-coded configuration (upstream Grit.config), shared by the inference caption head
// (layers/grit.hpp) and its train-mode description (layers/grit_train.hpp).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "gyolo/core/error.hpp"

namespace gyolo {

/// Grit's hard-coded configuration (upstream Grit.config), as exported in `gyolo.grit_config`.
struct grit_config {
  int d_model = 256, n_heads = 8, d_ff = 512, grid_feat_dim = 512, vocab_size = 10202;
  int max_len = 128;         // position table has max_len + 1 rows
  int beam_len = 20;         // generated tokens
  int beam_size = 5;         // caption/predict.py and val.py set 5
  int pad = 0, bos = 2, eos = 3;
  int grid_layers = 1, decoder_layers = 1;
  int topk = 300;            // Grit.k: detection-guided region tokens

  /// Reads upstream's config dict (missing keys keep the official values). Throws on settings the
  /// port does not implement (decoder other than 'parallel', grid or region features disabled).
  static grit_config from_json(const nlohmann::json& j) {
    grit_config c;
    auto get = [&](const char* k, int& v) {
      if (j.contains(k) && j.at(k).is_number_integer()) v = j.at(k).get<int>();
    };
    try {
      get("d_model", c.d_model);
      get("n_heads", c.n_heads);
      get("d_ff", c.d_ff);
      get("grid_feat_dim", c.grid_feat_dim);
      get("vocab_size", c.vocab_size);
      get("max_len", c.max_len);
      get("beam_len", c.beam_len);
      get("pad_idx", c.pad);
      get("bos_idx", c.bos);
      get("eos_idx", c.eos);
      if (j.contains("grid_net") && j.at("grid_net").contains("n_layers")) c.grid_layers = j.at("grid_net").at("n_layers").get<int>();
      if (j.contains("cap_generator")) {
        const auto& g = j.at("cap_generator");
        if (g.contains("n_layers")) c.decoder_layers = g.at("n_layers").get<int>();
        if (g.contains("decoder_name") && g.at("decoder_name").get<std::string>() != "parallel")
          throw error("grit_config: decoder '" + g.at("decoder_name").get<std::string>() + "' is not supported (only 'parallel')");
      }
      for (const char* k : {"use_gri_feat", "use_reg_feat"})
        if (j.contains(k) && !j.at(k).get<bool>()) throw error(std::string("grit_config: ") + k + " = false is not supported");
    } catch (const nlohmann::json::exception& e) {
      throw error(std::string("grit_config is malformed: ") + e.what());
    }
    c.validate();
    return c;
  }
  /// Upstream's config dict for these values (what from_json reads back): the weights file's
  /// gyolo.grit_config when gyolo itself writes the file.
  nlohmann::json to_json() const {
    return {{"d_model", d_model},
            {"n_heads", n_heads},
            {"d_ff", d_ff},
            {"grid_feat_dim", grid_feat_dim},
            {"vocab_size", vocab_size},
            {"max_len", max_len},
            {"beam_len", beam_len},
            {"pad_idx", pad},
            {"bos_idx", bos},
            {"eos_idx", eos},
            {"use_gri_feat", true},
            {"use_reg_feat", true},
            {"grid_net", {{"n_layers", grid_layers}}},
            {"cap_generator", {{"n_layers", decoder_layers}, {"decoder_name", "parallel"}}}};
  }
  void validate() const {
    GYOLO_CHECK(d_model > 0 && n_heads > 0 && d_model % n_heads == 0, "grit_config: d_model must be a positive multiple of n_heads");
    GYOLO_CHECK(d_ff > 0 && grid_feat_dim > 0 && vocab_size > 0, "grit_config: non-positive size");
    GYOLO_CHECK(beam_len > 0 && beam_len <= max_len, "grit_config: beam_len must be in [1, max_len]");
    GYOLO_CHECK(beam_size > 0 && beam_size <= vocab_size, "grit_config: bad beam_size");
    GYOLO_CHECK(grid_layers >= 0 && decoder_layers >= 1, "grit_config: bad layer counts");
    for (int id : {pad, bos, eos}) GYOLO_CHECK(id >= 0 && id < vocab_size, "grit_config: special token id out of range");
  }
};

}  // namespace gyolo
