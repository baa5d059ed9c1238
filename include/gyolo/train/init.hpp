// Initial weights for training from scratch, as upstream's model starts:
//   - nn.Conv2d / nn.Linear weights: PyTorch's default kaiming_uniform_(a = sqrt(5)), i.e.
//     U(-1/sqrt(fan_in), 1/sqrt(fan_in)); their biases U(-1/sqrt(fan_in), 1/sqrt(fan_in));
//   - BatchNorm / LayerNorm: weight 1, bias 0, running mean 0, running variance 1;
//   - the Grit transformer (grit_transformer.*): every parameter with more than one dimension
//     xavier_uniform_ (Transformer.init_weights), U(-sqrt(6/(fan_in+fan_out)), ...);
//   - the detection heads' bias init (Detect.bias_init, spec §4.6): the last box conv's biases 1,
//     the last class conv's biases ln(5 / nc / (640 / stride)^2).
// Random numbers come from gyolo's own generator (splitmix64, 24-bit floats), so a seed gives the
// same weights with every compiler and standard library.
#pragma once
#include <cmath>
#include <algorithm>
#include <cstdint>
#include <map>
#include <string>

#include "gyolo/core/random.hpp"
#include "gyolo/model/train_model.hpp"
#include "gyolo/nn/module.hpp"

namespace gyolo::train {

/// FNV-1a of a name: each tensor draws from its own stream (seed, name), so adding a tensor does
/// not change the others.
inline std::uint64_t name_hash(const std::string& n) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : n) h = (h ^ c) * 1099511628211ull;
  return h;
}

namespace init_detail {
inline bool ends_with(const std::string& s, const char* e) {
  const std::string x(e);
  return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}
inline std::string prefix_of(const std::string& n) { return n.substr(0, n.rfind('.')); }

struct initialiser {
  std::uint64_t seed;
  int nc;
  std::string last_weight_prefix;
  double last_fan_in = 1;
  bool last_norm = false;

  void fill_uniform(param& p, const std::string& name, double bound) {
    splitmix64 g(seed ^ name_hash(name));
    for (auto& v : p.value) v = g.uniform_f(float(-bound), float(bound));
  }
  void param(const std::string& name, gyolo::param& p) {
    const bool weight = ends_with(name, ".weight") || ends_with(name, "_weight");
    const bool bias = ends_with(name, ".bias") || ends_with(name, "_bias");
    if (p.norm_weight) {  // BatchNorm / LayerNorm weight
      std::fill(p.value.begin(), p.value.end(), 1.0f);
      last_weight_prefix = prefix_of(name);
      last_norm = true;
      return;
    }
    if (bias && prefix_of(name) == last_weight_prefix) {
      if (last_norm) std::fill(p.value.begin(), p.value.end(), 0.0f);
      else fill_uniform(p, name, 1.0 / std::sqrt(last_fan_in));
      return;
    }
    if (p.shape.size() >= 2) {
      double fan_in = 1, fan_out = double(p.shape[0]);
      for (std::size_t i = 1; i < p.shape.size(); ++i) fan_in *= double(p.shape[i]);
      for (std::size_t i = 2; i < p.shape.size(); ++i) fan_out *= double(p.shape[i]);
      if (name.find("grit_transformer.") != std::string::npos)
        fill_uniform(p, name, std::sqrt(6.0 / (fan_in + fan_out)));
      else
        fill_uniform(p, name, 1.0 / std::sqrt(fan_in));
      last_weight_prefix = weight ? prefix_of(name) : std::string();
      last_fan_in = fan_in;
      last_norm = false;
      return;
    }
    // A one-dimensional parameter that belongs to no weight (a learned vector): PyTorch modules
    // that hold such vectors initialise them to zero unless they say otherwise.
    std::fill(p.value.begin(), p.value.end(), 0.0f);
  }
  void buffer(const std::string& name, gyolo::buffer& b) {
    if (ends_with(name, "running_mean")) std::fill(b.value.begin(), b.value.end(), 0.0f);
    else if (ends_with(name, "running_var")) std::fill(b.value.begin(), b.value.end(), 1.0f);
  }
};
}  // namespace init_detail

/// Detect.bias_init (spec §4.6): in each box branch cv2 / cv4 / cv6 and class branch cv3 / cv5 /
/// cv7 of head 55, level i (stride 8, 16, 32), the last conv's bias (the branch's nn.Conv2d, the
/// highest-numbered child with a bias): boxes 1, classes ln(5 / nc / (640 / stride)^2).
template <class B>
void head_bias_init(train_model<B>& m, int nc) {
  std::map<std::string, param*> last;  // "model.55.cv3.0." -> its last bias
  nn::for_each_param(m, "model", [&](const std::string& n, param& p) {
    if (n.rfind("model.55.cv", 0) != 0 || !init_detail::ends_with(n, ".bias") || n.find(".bn.") != std::string::npos) return;
    const auto dot = n.find('.', n.find('.', 9) + 1);  // after "model.55.cvK.i"
    last[n.substr(0, dot + 1)] = &p;                     // walk order: the last one wins
  });
  const double strides[3] = {8, 16, 32};
  for (int i = 0; i < 3; ++i) {
    for (const char* box : {"cv2", "cv4", "cv6"}) {
      auto it = last.find("model.55." + std::string(box) + "." + std::to_string(i) + ".");
      if (it != last.end()) std::fill(it->second->value.begin(), it->second->value.end(), 1.0f);
    }
    for (const char* cls : {"cv3", "cv5", "cv7"}) {
      auto it = last.find("model.55." + std::string(cls) + "." + std::to_string(i) + ".");
      if (it == last.end()) continue;
      const float b = float(std::log(5.0 / nc / ((640.0 / strides[i]) * (640.0 / strides[i]))));
      auto& v = it->second->value;
      std::fill(v.begin(), v.begin() + std::min<std::ptrdiff_t>(nc, std::ptrdiff_t(v.size())), b);
    }
  }
}

/// Fresh weights for model m (built with init()) of a variant with nc classes, from `seed`.
template <class B>
void init_weights(train_model<B>& m, int nc, std::uint64_t seed) {
  init_detail::initialiser w{seed, nc, {}, 1, false};
  nn::walk(m, "model", w);
  head_bias_init(m, nc);
}

}  // namespace gyolo::train
