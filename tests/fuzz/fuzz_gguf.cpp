// libFuzzer target: the weights-file reader (io/gguf.hpp), what the model loader reads from its
// metadata (model_info: gyolo.yaml -> variant_config, names, grit config, vocab) and the loader's
// tensor path (nn::load_tensors through gguf_weights: names, shapes, types, NaN checks) on a Conv+BN
// block as model.0.
// Every input must end in success or a gyolo::error (any other exception, crash, leak or sanitizer
// report is a finding). tests/fuzz/run.sh builds and runs it.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "gyolo/io/gguf.hpp"
#include "gyolo/model/weights.hpp"
#include "gyolo/nn/module.hpp"
#include "gyolo/train/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto f = gyolo::gguf::file::from_memory("fuzz.gguf", std::vector<char>(data, data + size));
    std::size_t total = 0;
    for (const auto& t : f.tensors()) {
      if (t.nbytes > (std::size_t(1) << 22)) continue;  // reading is bounded by the file; keep execs fast
      try {
        total += f.read_f32(t).size();
      } catch (const gyolo::error&) {
      }
    }
    for (const auto& [k, v] : f.metadata()) total += k.size();
    try {
      const auto info = gyolo::train::read_model_info(f, "fuzz.gguf");
      total += info.names.size() + info.vocab.size();
    } catch (const gyolo::error&) {
    }
    try {
      gyolo::train_conv<gyolo::cpu> conv;
      conv.init_bn(1, 2, 1, 1, 1, gyolo::act::silu);
      gyolo::gguf_weights ws(f);
      gyolo::nn::load_tensors(conv, ws, "model.0");
      total += conv.w.value.size();
    } catch (const gyolo::error&) {
    }
    (void)total;
  } catch (const gyolo::error&) {
  }
  return 0;
}
