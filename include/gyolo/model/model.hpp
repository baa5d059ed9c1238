// A loaded Generalist YOLO model: the compile-time variant V, the backend B, and the data carried in
// the weights file (class names, vocabulary, provenance).
#pragma once
#include <nlohmann/json.hpp>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "gyolo/io/gguf.hpp"
#include "gyolo/layers/grit.hpp"
#include "gyolo/model/caption_result.hpp"
#include "gyolo/core/compiled_once.hpp"
#include "gyolo/model/config.hpp"
#include "gyolo/model/vision.hpp"
#include "gyolo/text/detokenize.hpp"

namespace gyolo {

/// Derives the variant a weights file was made for from the gyolo.yaml it carries, applying
/// upstream's parse_model rules; the topology (module types and 'from' indices) must be gyolo.yaml's.
inline variant_config variant_from_yaml(const nlohmann::json& y, const std::string& where) {
  auto fail = [&](const std::string& m) -> void { throw error("weights file '" + where + "': " + m); };
  try {
    const double gw = y.at("width_multiple").get<double>();
    std::vector<nlohmann::json> layers;
    for (auto& l : y.at("backbone")) layers.push_back(l);
    for (auto& l : y.at("head")) layers.push_back(l);
    if (layers.size() != 58) fail("model yaml has " + std::to_string(layers.size()) + " layers, gyolo has 58");
    auto mod = [&](int i, const char* expect) {
      const auto m = layers[std::size_t(i)].at(2).get<std::string>();
      if (m != expect) fail("model yaml layer " + std::to_string(i) + " is " + m + ", gyolo expects " + expect);
      return layers[std::size_t(i)].at(3);
    };
    auto scale_c2 = [&](int v) { return detail::make_div8(v * gw); };
    struct reader {
      decltype(mod)& m;
      decltype(scale_c2)& scale;
      void c2(int i, const char* t, int& c) { c = scale(m(i, t).at(0).template get<int>()); }
      void arg(int i, int pos, int& c) { c = layers_arg(i, pos); }
      void elan(int i, const char* t, elan_args& e) {
        auto a = m(i, t);
        e = elan_args{scale(a.at(0).template get<int>()), a.at(1).template get<int>(), a.at(2).template get<int>(), a.at(3).template get<int>()};
      }
      void cbl(int i, cbl_args& c) {
        auto a = m(i, "CBLinear").at(0);
        if (!a.is_array() || a.empty() || a.size() > 3) throw error("model yaml layer " + std::to_string(i) + ": CBLinear needs 1-3 output chunks");
        c = cbl_args{int(a.size()), {}};
        for (std::size_t k = 0; k < a.size(); ++k) c.c[k] = a.at(k).template get<int>();
      }
      std::function<int(int, int)> layers_arg;
    } rd{mod, scale_c2, [&](int i, int pos) { return layers[std::size_t(i)].at(3).at(std::size_t(pos)).get<int>(); }};
    variant_config v;
    v.nc = y.at("nc").get<int>();
    variant_config::fields(rd, v);
    {
      auto a = mod(55, "DualDPanoptic");
      v.sem_nc = a.at(1).get<int>();
      v.nm = scale_c2(a.at(2).get<int>());
    }
    mod(56, "Grit");
    // Fixed topology: 'from' fields of the layers the inference graph reads.
    const std::vector<std::pair<int, std::string>> from{{13, "[-1,7]"}, {16, "[-1,5]"}, {19, "[-1,14]"}, {22, "[-1,11]"},
                                                        {43, "17"}, {51, "17"},
                                                        {55, "[32,35,38,17,20,23,17,20,23,42,46,50,54]"}};
    for (auto& [i, f] : from)
      if (layers[std::size_t(i)].at(0).dump() != f)
        fail("model yaml layer " + std::to_string(i) + " reads from " + layers[std::size_t(i)].at(0).dump() + ", gyolo expects " + f);
    return v;
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("model yaml is malformed: ") + e.what());
  }
  return {};
}

namespace detail {
struct config_diff {
  std::string r;
  static std::string str(int x) { return std::to_string(x); }
  static std::string str(const elan_args& x) { return "(" + str(x.c2) + "," + str(x.c3) + "," + str(x.c4) + "," + str(x.c5) + ")"; }
  static std::string str(const cbl_args& x) {
    std::string s = "[";
    for (int i = 0; i < x.n; ++i) s += (i ? "," : "") + str(x.c[std::size_t(i)]);
    return s + "]";
  }
  template <class T> void chk(const std::string& n, const T& x, const T& y) {
    if (!(x == y) && r.empty()) r = n + ": compiled variant has " + str(x) + ", file has " + str(y);
  }
  void c2(int i, const char*, const int& x, const int& y) { chk("layer " + str(i), x, y); }
  void arg(int i, int pos, const int& x, const int& y) { chk("layer " + str(i) + " argument " + str(pos), x, y); }
  void elan(int i, const char*, const elan_args& x, const elan_args& y) { chk("layer " + str(i), x, y); }
  void cbl(int i, const cbl_args& x, const cbl_args& y) { chk("layer " + str(i), x, y); }
};
}  // namespace detail

/// The first field in which two variants differ, e.g. "layer 3: compiled variant has (256,128,64,1), file has ...".
inline std::string describe_mismatch(const variant_config& a, const variant_config& b) {
  detail::config_diff c;
  c.chk("nc", a.nc, b.nc);
  c.chk("sem_nc", a.sem_nc, b.sem_nc);
  c.chk("nm", a.nm, b.nm);
  variant_config::fields(c, a, b);
  return c.r;
}

struct load_options {
  bool one_to_many = false;  // also load the main one-to-many head (cv4/cv5/dfl2)
  bool caption = true;       // load the caption head (layer 56) when the file has its weights
  bool verify_checksum = true;  // check the file's content checksum (gyolo.crc32) when it has one
  /// Replace named tensors after reading them (same element count as the file's tensor, values in
  /// fp32): for experiments and tests. Every name must be a tensor the model loads.
  std::map<std::string, std::vector<float>> tensor_overrides;
  /// Device backends: the device the parameters are uploaded to (CUDA: its index). Ignored on the host.
  int device = 0;
};

/// A weight source that serves some tensors from memory instead of the underlying source.
class override_weights final : public weight_source {
 public:
  override_weights(weight_source& base, const std::map<std::string, std::vector<float>>& ov) : base_(base), ov_(ov) {}
  std::vector<float> get(const std::string& name, const dims& shape) override {
    auto v = base_.get(name, shape);
    auto it = ov_.find(name);
    if (it == ov_.end()) return v;
    GYOLO_CHECK(it->second.size() == v.size(), "tensor override '" + name + "' has " + std::to_string(it->second.size()) +
                                                   " values, the tensor has " + std::to_string(v.size()));
    used_.insert(name);
    return it->second;
  }
  std::string describe() const override { return base_.describe() + " (with overrides)"; }
  /// Throws if an override named no tensor that was read.
  void check_all_used() const {
    for (auto& [k, v] : ov_)
      GYOLO_CHECK(used_.count(k), "tensor override '" + k + "' names no tensor that the model loads");
  }

 private:
  weight_source& base_;
  const std::map<std::string, std::vector<float>>& ov_;
  std::set<std::string> used_;
};

/// What model::forward computes besides the inference outputs.
struct forward_options {
  bool one_to_many = false;       // also the one-to-many (auxiliary) head's maps, as upstream's training head
  bool caption_features = false;  // also x11/x17/x20/x23/x44: the inputs caption() needs
};

/// A loaded network of variant V on backend B (weights, class names, caption vocabulary).
/// Immutable once loaded: any number of threads may call forward() and caption() at once, each
/// with its own `context`.
template <class B, variant V = gyolo_c>
class model {
 public:
  static constexpr variant_config config = V::value;

  /// Loads a GGUF file written by weights_tools/convert.py. Throws gyolo::error naming the problem.
  static model load(const std::string& path, load_options opt = {}) {
    const gguf::file f(path, gguf::open_options{.verify_checksum = opt.verify_checksum});
    return load(f, opt);
  }

  /// The same from a file already opened (e.g. after reading its metadata to choose the variant).
  GYOLO_COMPILED_ONCE static model load(const gguf::file& f, load_options opt = {}) {
    const std::string& path = f.path();
    if (!f.has("general.architecture") || f.get_string("general.architecture") != "gyolo")
      f.fail("general.architecture is not 'gyolo'");
    const auto fv = f.get_uint("gyolo.format_version");
    if (fv != 1) f.fail("unsupported gyolo.format_version " + std::to_string(fv) + " (this build reads 1)");
    nlohmann::json y;
    try {
      y = nlohmann::json::parse(f.get_string("gyolo.yaml"));
    } catch (const nlohmann::json::exception& e) {
      f.fail(std::string("gyolo.yaml is not valid JSON: ") + e.what());
    }
    const auto fileconf = variant_from_yaml(y, path);
    if (!(fileconf == config))
      f.fail(std::string("variant mismatch with compiled variant '") + V::name + "': " + describe_mismatch(config, fileconf));
    const typename storage<B>::load_scope on_device(opt.device);
    model m;
    m.names_ = f.get_strings("gyolo.names");
    if (int(m.names_.size()) != config.nc)
      f.fail("gyolo.names has " + std::to_string(m.names_.size()) + " entries, expected nc = " + std::to_string(config.nc));
    if (f.has("gyolo.vocab")) m.vocab_ = f.get_strings("gyolo.vocab");
    m.source_sha256_ = f.has("gyolo.source_sha256") ? f.get_string("gyolo.source_sha256") : "";
    m.converter_ = f.has("gyolo.converter_version") ? f.get_string("gyolo.converter_version") : "";
    gguf_weights gw(f);
    override_weights ws(gw, opt.tensor_overrides);
    m.vision_.load(ws, config, opt.one_to_many);
    if (opt.caption && f.find("model.56.grit_transformer.cap_generator.fc.weight")) {
      grit_config gc;
      if (f.has("gyolo.grit_config")) {
        try {
          gc = grit_config::from_json(nlohmann::json::parse(f.get_string("gyolo.grit_config")));
        } catch (const nlohmann::json::exception& e) {
          f.fail(std::string("gyolo.grit_config is not valid JSON: ") + e.what());
        } catch (const error& e) {
          f.fail(e.what());
        }
      }
      if (!m.vocab_.empty() && int(m.vocab_.size()) != gc.vocab_size)
        f.fail("gyolo.vocab has " + std::to_string(m.vocab_.size()) + " entries, the caption head's vocab_size is " +
               std::to_string(gc.vocab_size));
      try {
        m.grit_.load(ws, "model.56", gc, {config.e17.c2, config.e20.c2, config.e23.c2, config.psa, config.e43.c2});
      } catch (const error& e) {
        const std::string msg = e.what();
        if (msg.rfind("weights file", 0) == 0) throw;
        f.fail(msg);
      }
      m.detok_ = vocabulary(m.vocab_);
    }
    ws.check_all_used();
    m.description_ = path;
    return m;
  }

  /// Builds the model from any weight source (e.g. random_weights for demos and tests).
  static model from_source(weight_source& ws, load_options opt = {}) {
    const typename storage<B>::load_scope on_device(opt.device);
    model m;
    m.vision_.load(ws, config, opt.one_to_many);
    m.names_.clear();
    for (int i = 0; i < config.nc; ++i) m.names_.push_back("class" + std::to_string(i));
    m.description_ = ws.describe();
    return m;
  }

  /// Vision forward: upstream's raw outputs (pred, proto, semantic, the one-to-one head maps) and
  /// what `o` asks for besides.
  vision_outputs<B> forward(context<B>& ctx, cbview<B> x, const forward_options& o = {}) const {
    const auto in_use = ctx.enter("model::forward");
    return vision_.forward(ctx, x, o.one_to_many, o.caption_features);
  }

  /// True when the caption head is loaded and the file carries a vocabulary to decode with.
  bool has_caption() const { return grit_.loaded() && !vocab_.empty(); }

  /// Captions for every image of a forward pass run with caption_features = true (spec §6): the best
  /// of upstream's 5-beam search, 20 tokens with per-token log-probs, and the decoded text (empty
  /// when the file has no vocabulary). Throws if the caption head is not loaded.
  GYOLO_COMPILED_ONCE std::vector<caption_result> caption(context<B>& ctx, const vision_outputs<B>& o) const {
    const auto in_use = ctx.enter("model::caption");
    GYOLO_CHECK(grit_.loaded(), "caption: the model has no caption head (no Grit weights in '" + description_ + "')");
    GYOLO_CHECK(o.x11.numel() && o.x17.numel() && o.x20.numel() && o.x23.numel() && o.x44.numel(),
                "caption: the vision outputs lack the caption features (call forward with {.caption_features = true})");
    const typename grit_head<B>::inputs in{o.x17.cv(), o.x20.cv(), o.x23.cv(), o.x11.cv(), o.x44.cv(),
                                           {o.d3[0].cv(), o.d3[1].cv(), o.d3[2].cv()}, o.semantic.cv()};
    std::vector<beam_hypothesis> hyps = grit_(ctx, in);
    std::vector<caption_result> r(hyps.size());
    for (std::size_t i = 0; i < hyps.size(); ++i) {
      r[i].tokens = std::move(hyps[i].tokens);
      r[i].token_log_probs = std::move(hyps[i].log_probs);
      r[i].log_prob = hyps[i].score;
      if (!detok_.empty()) r[i].text = detok_.decode(r[i].tokens);
    }
    return r;
  }

  const grit_head<B>& grit() const { return grit_; }
  const vocabulary& detokenizer() const { return detok_; }
  const vision_graph<B>& vision() const { return vision_; }
  const std::vector<std::string>& names() const { return names_; }
  const std::vector<std::string>& vocab() const { return vocab_; }
  const std::string& description() const { return description_; }
  const std::string& source_sha256() const { return source_sha256_; }

 private:
  vision_graph<B> vision_;
  grit_head<B> grit_;
  vocabulary detok_;
  std::vector<std::string> names_, vocab_;
  std::string description_, source_sha256_, converter_;
};

/// Compiled once in gyolo's library for the variants that ship (src/pipeline_cpu.cpp).
extern template class model<cpu, gyolo_c>;
extern template class model<cpu, gyolo_shapes>;
extern template class model<cpu, gyolo_tiny>;

}  // namespace gyolo
