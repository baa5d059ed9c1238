// The whole upstream network in train mode as ONE module: layers 1-55 (vision_graph<B, train_mode>,
// auxiliary branch included) and the Grit caption head as child "56" (grit_train<B>). Its fields()
// are the vision graph's followed by "56", so every walk over it (nn::load_tensors,
// nn::expected_tensors, nn::save_tensors, nn::for_each_param, nn::zero_grad) sees upstream's whole
// state_dict in order under one prefix: model.1 ... model.55, model.56 (model.0 is upstream's
// Silence layer, which has no tensors).
#pragma once
#include <array>
#include <cstdint>

#include "gyolo/layers/grit_train.hpp"
#include "gyolo/model/config.hpp"
#include "gyolo/model/vision.hpp"

namespace gyolo {

/// What a whole-model train forward returns: head 55's training outputs (and the caption head's
/// inputs) and Grit's teacher-forced log-probabilities [B, seq_len, 1, V].
template <class B>
struct train_model_outputs {
  vision_train_outputs<B> vision;
  tvar logp;
};

template <class B>
struct train_model {
  vision_graph<B, train_mode> vision;
  grit_train<B> grit;

  /// Grit's input channels for variant c: x17, x20, x23, x11, x44 (Grit's ch[:3], ch[-3], ch[-2]).
  static std::array<int, 5> grit_channels(const variant_config& c) { return {c.e17.c2, c.e20.c2, c.e23.c2, c.psa, c.e43.c2}; }

  /// Builds every layer of variant c and the caption head of config g (parameters zero, BN and LN
  /// identity); without `aux` the auxiliary branch is left out.
  void init(const variant_config& c, const grit_config& g, bool aux = true) {
    vision.init(c, aux);
    grit.init(g, grit_channels(c));
  }

  /// Layers 1-55 by their gyolo.yaml index, then Grit as "56" (upstream's state_dict order).
  template <class V, class... S> static void fields(V& v, S&... s) {
    vision_graph<B, train_mode>::fields(v, s.vision...);
    v.child("56", s.grit...);
  }

  /// Train-mode forward of layers 0-56: the vision graph, then Grit teacher-forced on `caps`
  /// ([B, seq_len] ids, BOS first, PAD-padded) from the vision graph's own features.
  train_model_outputs<B> forward(tape<B>& t, tview x, const std::int64_t* caps, int seq_len) const {
    train_model_outputs<B> o;
    o.vision = vision.forward(t, x);
    o.logp = grit.forward(t, grit_train_inputs::from_vision(o.vision, caps, seq_len));
    return o;
  }
};

}  // namespace gyolo
