// Weights files that gyolo writes itself (gyolo train): the metadata a converted checkpoint carries
// (weights_tools/convert.py), so that model<B, V>::load, `gyolo predict` and `gyolo train --weights`
// read them like converted ones, and the training checkpoints (`last.gguf`: the model with its
// training state and where the run stands; `best.gguf`: the EMA weights for inference).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gyolo/io/gguf.hpp"
#include "gyolo/io/gguf_write.hpp"
#include "gyolo/layers/grit_config.hpp"
#include "gyolo/model/config.hpp"
#include "gyolo/model/model.hpp"
#include "gyolo/model/train_model.hpp"
#include "gyolo/model/yaml_write.hpp"
#include "gyolo/nn/save.hpp"
#include "gyolo/version.hpp"

namespace gyolo::train {

/// What describes a model besides its tensors.
struct model_info {
  variant_config variant;
  grit_config grit;
  std::vector<std::string> names;        // nc class names
  std::vector<std::string> stuff_names;  // the semantic channels after the things (may be empty)
  std::vector<std::string> vocab;        // the caption vocabulary (gyolo.vocab)
  std::string name = "gyolo";            // general.name
};

/// The key/values convert.py writes (general.*, gyolo.format_version, gyolo.yaml, gyolo.nc,
/// gyolo.names, gyolo.stride, gyolo.grit_config, gyolo.vocab), plus gyolo.stuff_names.
inline void write_model_info(gguf::writer& w, const model_info& m) {
  GYOLO_CHECK(int(m.names.size()) == m.variant.nc, "model_info: " + std::to_string(m.names.size()) + " class names for nc = " +
                                                       std::to_string(m.variant.nc));
  w.set_string("general.architecture", "gyolo");
  w.set_string("general.name", m.name);
  w.set_u32("general.alignment", 32);
  w.set_u32("gyolo.format_version", 1);
  w.set_string("gyolo.converter_version", std::string("gyolo ") + GYOLO_VERSION_STRING);
  w.set_string("gyolo.yaml", variant_yaml(m.variant).dump());
  w.set_u32("gyolo.nc", std::uint32_t(m.variant.nc));
  w.set_strings("gyolo.names", m.names);
  w.set_f32s("gyolo.stride", {8.0f, 16.0f, 32.0f});
  w.set_string("gyolo.grit_config", m.grit.to_json().dump());
  if (!m.vocab.empty()) w.set_strings("gyolo.vocab", m.vocab);
  if (!m.stuff_names.empty()) w.set_strings("gyolo.stuff_names", m.stuff_names);
}

/// Reads back what write_model_info (or convert.py) wrote; names the file and key on error.
inline model_info read_model_info(const gguf::file& f, const std::string& path) {
  model_info m;
  if (!f.has("general.architecture") || f.get_string("general.architecture") != "gyolo") f.fail("general.architecture is not 'gyolo'");
  if (!f.has("gyolo.yaml")) f.fail("no gyolo.yaml metadata: not a gyolo weights file");
  try {
    m.variant = variant_from_yaml(nlohmann::json::parse(f.get_string("gyolo.yaml")), path);
    if (f.has("gyolo.grit_config")) m.grit = grit_config::from_json(nlohmann::json::parse(f.get_string("gyolo.grit_config")));
  } catch (const nlohmann::json::exception& e) {
    f.fail(std::string("metadata is not valid JSON: ") + e.what());
  }
  m.names = f.get_strings("gyolo.names");
  if (int(m.names.size()) != m.variant.nc)
    f.fail("gyolo.names has " + std::to_string(m.names.size()) + " entries, expected nc = " + std::to_string(m.variant.nc));
  if (f.has("gyolo.stuff_names")) m.stuff_names = f.get_strings("gyolo.stuff_names");
  if (f.has("gyolo.vocab")) m.vocab = f.get_strings("gyolo.vocab");
  if (f.has("general.name")) m.name = f.get_string("general.name");
  return m;
}

/// Inference weights: the train form's tensors without the auxiliary branch (what convert.py keeps
/// for inference), fp32 or, with `half`, fp16 (half the size; the model then differs from the
/// fp32 one by fp16 rounding of its weights).
template <class B>
void save_inference_weights(const std::string& path, train_model<B>& m, const model_info& info, bool half = false) {
  gguf::writer w;
  write_model_info(w, info);
  if (half) {
    struct {
      gguf::writer& w;
      void add(const std::string& n, const dims& s, const std::vector<float>& v) {
        for (float x : v) GYOLO_CHECK(std::isfinite(x), "cannot save tensor '" + n + "': it holds a value that is not finite");
        const std::vector<std::int64_t> sh(s.begin(), s.end());
        if (s.size() >= 2) w.add_tensor_f16(n, sh, v);  // vectors (biases, BatchNorm) stay fp32
        else w.add_tensor(n, sh, v);
      }
      void param(const std::string& n, param& p) { add(n, p.shape, p.value); }
      void buffer(const std::string& n, buffer& b) { add(n, b.shape, b.value); }
    } f{w};
    nn::walk(m, "model", f, nn::parts{false, true});
  } else {
    nn::save_tensors(w, m, "model", nn::parts{false, true});
  }
  w.write(path);
}

}  // namespace gyolo::train
