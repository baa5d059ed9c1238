// Saving train-mode modules: every parameter and buffer, fp32, under its upstream state_dict name
// (names, shapes and order from the module's fields(), like nn::load_tensors), into a GGUF writer.
//
//   gguf::writer w;
//   w.copy_metadata(gguf::file(start_path));   // yaml, names, vocab, grit_config of the start
//   nn::save_tensors(w, graph, "model");
//   w.write(out_path);                          // read back by gguf_weights / model<B, V>::load
#pragma once
#include <cmath>
#include <string>

#include "gyolo/core/error.hpp"
#include "gyolo/io/gguf_write.hpp"
#include "gyolo/nn/module.hpp"

namespace gyolo::nn {

/// Adds every parameter and buffer of `m` under `prefix` (e.g. "model") to `w` as fp32, in walk
/// order (fields() declaration order, parameters and buffers interleaved as declared). A value that
/// is NaN or Inf is an error naming the tensor: gguf_weights refuses such files, so a diverged
/// model must not be saved as if it were usable.
template <class M>
void save_tensors(gguf::writer& w, M& m, const std::string& prefix, parts p = {}) {
  struct {
    gguf::writer& w;
    void add(const std::string& n, const dims& shape, const std::vector<float>& v) {
      for (std::size_t i = 0; i < v.size(); ++i)
        if (!std::isfinite(v[i]))
          throw error("cannot save tensor '" + n + "': value " + std::to_string(v[i]) + " at index " + std::to_string(i) +
                      " is not finite");
      w.add_tensor(n, shape, v);
    }
    void param(const std::string& n, param& p) { add(n, p.shape, p.value); }
    void buffer(const std::string& n, buffer& b) { add(n, b.shape, b.value); }
  } f{w};
  walk(m, prefix, f, p);
}

}  // namespace gyolo::nn
