// Train-mode Grit caption head (layer 56), teacher-forced: upstream's Grit.forward in training mode
// with seq = the caption ids (caption/train.py: set_params(src_masks, caps, cap_masks); Grit never
// reads cap_masks), returning the decoder's log-probabilities [B, L, V]. Forward on a tape<B>,
// backward through the recorded closures, gradients accumulated into every param's grad (+=).
//
// What upstream does and this module mirrors (spec §6, §7.3, §7.4b):
//  - cv3[l] (x17, x20, x23), cv4 (x11) and cv5 (x44) are Conv+BN+SiLU run on the FULL maps: in
//    training their BatchNorms normalise with batch statistics over every position and update their
//    running statistics (train_conv). Only then are region tokens gathered (the inference head may
//    evaluate them at the gathered positions only; training may not).
//  - stop-gradients: the one-to-one head maps d3 (top-k region selection) and the semantic logits s2
//    (arg-max positions) are .detach()ed inside Grit: they are plain values here (cview), only their
//    indices are used. The features x17, x20, x23, x11, x44 receive gradients.
//  - region tokens Y2 = [top-300 anchors of cv3 maps, one token per semantic class from cv5 at its
//    arg-max] (repeated positions accumulate their gradients); grid tokens = cv4 output flattened
//    row-major, through grid_net (LN(Drop(ReLU(fc G))), then post-LN transformer layers).
//  - decoder ('parallel'): x = word_emb[ids] + pos_emb[pos], pos = t + 1 (0 for PAD inputs);
//    self-attention mask = causal OR key PAD; every sub-layer output multiplied by mask_pad
//    (query is not PAD); both gates use fc_alpha1 (fc_alpha2 is described and loaded, never used,
//    never gets a gradient); E = (E1 a1 + E2 a2) / sqrt(2); logits = fc (no bias); log_softmax.
//  - pos_emb is frozen (nn.Embedding.from_pretrained(freeze=True)): a buffer here. word_emb has
//    padding_idx = PAD: its PAD row never receives a gradient.
//  - dropout (upstream p = 0.2 after relu(grid fc), on attention probabilities, after every
//    attention's fc_o, after relu(fc1) and after fc2 of every FFN) is an option, off by default;
//    when on (and tape.training) its masks come from this module's seeded RNG, so they cannot match
//    torch's. Parity tests run with dropout off, as the fixtures do.
//  - grid key mask (upstream gri_mask, from src_mask) is optional: all False in training (square
//    letterboxed images) and in predict/val. The region mask is all False upstream: none here.
//
// This file is the one description of Grit's structure: init() (shapes from the config and the
// input channels) and fields() (upstream's tensor names, state_dict order). Loading, the expected
// tensors, saving and the inference form (grit_head<B>::load = fold(load(grit_train))) derive
// from it.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gyolo/layers/conv_train.hpp"
#include "gyolo/core/compiled_once.hpp"
#include "gyolo/layers/grit_config.hpp"
#include "gyolo/nn/module.hpp"
#include "gyolo/nn/tape.hpp"
#include "gyolo/train/ops_ref.hpp"
#include "gyolo/train/ops_seq.hpp"
#include "gyolo/train/linear_cpu.hpp"

namespace gyolo {

namespace seq {

/// A tape-owned token-major matrix [rows, cols]: values and gradient with the same layout
/// (g == nullptr: no gradient flows into it).
struct tmat {
  mview v;
  float* g = nullptr;
  int rows() const { return v.rows; }
  int cols() const { return v.cols; }
  cmview val() const { return v; }
  mview grad() const { return {g, v.rows, v.cols, v.ld}; }
  bool has_grad() const { return g != nullptr; }
  /// Rows [r0, r0 + n) (values and gradient).
  tmat middle_rows(int r0, int n) const { return {v.middle_rows(r0, n), g ? g + std::int64_t(r0) * v.ld : nullptr}; }
};

template <class B>
tmat alloc(tape<B>& t, int rows, int cols, bool grad = true) {
  auto x = t.alloc({1, 1, rows, cols}, grad);
  return {as_mat(x.t.data, rows, cols), x.t.gdata};
}

/// Dropout settings of one forward: active only with p > 0 and tape.training.
struct dropout_ctx {
  double p = 0;
  std::mt19937_64* rng = nullptr;
  template <class B> bool active(const tape<B>& t) const { return p > 0 && rng && t.training; }
  /// n multipliers (0 or 1/(1-p)) kept on the tape until reset().
  template <class B> float* mask(tape<B>& t, std::int64_t n) const {
    float* m = t.save(std::size_t(n));
    train::ref::dropout_mask<float>(*rng, p, n, m);
    return m;
  }
};

template <class B>
tmat dropout(tape<B>& t, tmat x, const dropout_ctx& d) {
  if (!d.active(t)) return x;
  const float* m = d.mask(t, std::int64_t(x.rows()) * x.cols());
  auto y = alloc(t, x.rows(), x.cols(), x.has_grad());
  train::ref::dropout<float>(x.val(), m, y.v);
  if (y.has_grad()) t.record([x, y, m] { train::ref::dropout_backward<float>(y.grad(), m, x.grad()); });
  return y;
}

template <class B>
tmat relu(tape<B>& t, tmat x) {
  auto y = alloc(t, x.rows(), x.cols(), x.has_grad());
  train::ref::relu<float>(x.val(), y.v);
  if (y.has_grad()) t.record([x, y] { train::ref::relu_backward<float>(x.val(), y.grad(), x.grad()); });
  return y;
}

template <class B>
tmat sigmoid(tape<B>& t, tmat x) {
  auto y = alloc(t, x.rows(), x.cols(), x.has_grad());
  train::ref::sigmoid<float>(x.val(), y.v);
  if (y.has_grad()) t.record([x, y] { train::ref::sigmoid_backward<float>(y.val(), y.grad(), x.grad()); });
  return y;
}

template <class B>
tmat add(tape<B>& t, tmat a, tmat b) {
  auto y = alloc(t, a.rows(), a.cols(), a.has_grad() || b.has_grad());
  train::ref::add<float>(a.val(), b.val(), y.v);
  if (y.has_grad())
    t.record([a, b, y] {
      train::ref::add_into<float>(y.grad(), a.grad());
      train::ref::add_into<float>(y.grad(), b.grad());
    });
  return y;
}

/// y = x * r[row] (upstream's "* mask_pad"); r must live until backward (tape-owned: t.save).
template <class B>
tmat mul_rows(tape<B>& t, tmat x, const float* r) {
  auto y = alloc(t, x.rows(), x.cols(), x.has_grad());
  train::ref::mul_rows<float>(x.val(), r, y.v);
  if (y.has_grad()) t.record([x, y, r] { train::ref::mul_rows_backward<float>(y.grad(), r, x.grad()); });
  return y;
}

template <class B>
tmat concat_cols(tape<B>& t, tmat a, tmat b) {
  auto y = alloc(t, a.rows(), a.cols() + b.cols(), a.has_grad() || b.has_grad());
  train::ref::concat_cols<float>(a.val(), b.val(), y.v);
  if (y.has_grad()) t.record([a, b, y] { train::ref::concat_cols_backward<float>(y.grad(), a.grad(), b.grad(), a.cols()); });
  return y;
}

template <class B>
tmat gate_mix(tape<B>& t, tmat e1, tmat a1, tmat e2, tmat a2, double div) {
  auto y = alloc(t, e1.rows(), e1.cols());
  train::ref::gate_mix<float>(e1.val(), a1.val(), e2.val(), a2.val(), div, y.v);
  t.record([=] {
    train::ref::gate_mix_backward<float>(e1.val(), a1.val(), e2.val(), a2.val(), div, y.grad(), e1.grad(), a1.grad(), e2.grad(),
                                         a2.grad());
  });
  return y;
}

template <class B>
tmat log_softmax(tape<B>& t, tmat x, tmat y) {
  train::ref::log_softmax<float>(x.val(), y.v);
  if (y.has_grad()) t.record([x, y] { train::ref::log_softmax_backward<float>(y.val(), y.grad(), x.grad()); });
  return y;
}

}  // namespace seq

// -------------------------------------------------------------------------------------------------
// Leaves
// -------------------------------------------------------------------------------------------------

/// torch.nn.Linear (weight [out, in], optional bias).
template <class B>
struct train_linear {
  int in = 0, out = 0;
  bool bias = true;
  mutable param w, b;
  void init(int in_, int out_, bool bias_ = true) {
    in = in_;
    out = out_;
    bias = bias_;
    w.init({out, in});
    if (bias) b.init({out});
  }
  template <class V> static void fields(V& v, train_linear& s) {
    v.param("weight", s.w);
    if (s.bias) v.param("bias", s.b);
  }
  void forward(tape<B>& t, seq::tmat x, seq::tmat y) const {
    GYOLO_CHECK(x.cols() == in && y.cols() == out && y.rows() == x.rows(), "linear: shape mismatch");
    if constexpr (std::is_same_v<B, cpu>) {  // Eigen GEMMs; the reference backend keeps the double-sum oracle
      train::fast::linear(x.val(), w.value.data(), bias ? b.value.data() : nullptr, y.v);
      if (!y.has_grad()) return;
      t.record([this, x, y] {
        train::fast::linear_backward(x.val(), w.value.data(), y.grad(), x.grad(), w.g(), bias ? b.g() : nullptr);
      });
    } else {
      train::ref::linear<float>(x.val(), w.value.data(), bias ? b.value.data() : nullptr, y.v);
      if (!y.has_grad()) return;
      t.record([this, x, y] {
        train::ref::linear_backward<float>(x.val(), w.value.data(), y.grad(), x.grad(), w.g(), bias ? b.g() : nullptr);
      });
    }
  }
  seq::tmat operator()(tape<B>& t, seq::tmat x) const {
    auto y = seq::alloc(t, x.rows(), out);
    forward(t, x, y);
    return y;
  }
};

/// torch.nn.LayerNorm(d) (eps 1e-5).
template <class B>
struct train_layer_norm {
  mutable param g, b;
  double eps = 1e-5;
  void init(int d) {
    g.init({d});
    b.init({d});
    std::fill(g.value.begin(), g.value.end(), 1.0f);
    g.norm_weight = true;
  }
  template <class V> static void fields(V& v, train_layer_norm& s) {
    v.param("weight", s.g);
    v.param("bias", s.b);
  }
  seq::tmat operator()(tape<B>& t, seq::tmat x) const {
    auto y = seq::alloc(t, x.rows(), x.cols());
    train::ref::layer_norm<float>(x.val(), g.value.data(), b.value.data(), eps, y.v);
    train::ref::workspace* ws = &t.ref_workspace(0);  // temporaries reused across steps
    t.record([this, x, y, ws] {
      train::ref::layer_norm_backward<float>(x.val(), g.value.data(), eps, y.grad(), x.grad(), g.g(), b.g(), &ws->d0);
    });
    return y;
  }
};

/// nn.Embedding (trainable; rows == padding_idx never receive a gradient).
template <class B>
struct train_embedding {
  mutable param w;
  void init(int n, int d) { w.init({n, d}); }
  template <class V> static void fields(V& v, train_embedding& s) { v.param("weight", s.w); }
};

/// nn.Embedding.from_pretrained(freeze=True): a table that never trains.
struct frozen_embedding {
  buffer w;
  void init(int n, int d) { w.init({n, d}); }
  template <class V> static void fields(V& v, frozen_embedding& s) { v.buffer("weight", s.w); }
};

// -------------------------------------------------------------------------------------------------
// Transformer blocks (models/grit.py)
// -------------------------------------------------------------------------------------------------

/// models.grit.Attention: fc_q, fc_k, fc_v, fc_o (no memory slots).
template <class B>
struct train_attention {
  train_linear<B> fc_q, fc_k, fc_v, fc_o;
  void init(int d) {
    for (auto* l : {&fc_q, &fc_k, &fc_v, &fc_o}) l->init(d, d);
  }
  template <class V, class... S> static void fields(V& v, S&... s) {
    v.child("fc_q", s.fc_q...);
    v.child("fc_k", s.fc_k...);
    v.child("fc_v", s.fc_v...);
    v.child("fc_o", s.fc_o...);
  }
};

/// models.grit.MultiHeadAttention: LN(q + Drop(fc_o(MHA(fc_q q, fc_k kv, fc_v kv)))); attention
/// probabilities dropped too. q rows [batch * nq], kv rows [batch * nk] (image-major).
template <class B>
struct train_mha {
  train_attention<B> attention;
  train_layer_norm<B> layer_norm;
  int heads = 1;
  void init(int d, int h) {
    heads = h;
    attention.init(d);
    layer_norm.init(d);
  }
  template <class V, class... S> static void fields(V& v, S&... s) {
    v.child("attention", s.attention...);
    v.child("layer_norm", s.layer_norm...);
  }
  /// mask (may be null): the boolean mask m indexes, tape-owned (it must live until backward).
  seq::tmat operator()(tape<B>& t, seq::tmat q, seq::tmat kv, int batch, const unsigned char* mask, train::ref::attn_mask m,
                       const seq::dropout_ctx& dr) const {
    auto Q = attention.fc_q(t, q);
    auto K = attention.fc_k(t, kv);
    auto V = attention.fc_v(t, kv);
    auto A = seq::alloc(t, q.rows(), q.cols());
    const int nq = q.rows() / batch, nk = kv.rows() / batch;
    const float* dm = dr.active(t) ? dr.mask(t, std::int64_t(batch) * heads * nq * nk) : nullptr;
    if (mask) m.m = mask;
    train::ref::workspace* ws = &t.ref_workspace(0);  // probabilities' storage reused across calls and steps
    train::ref::attention<float>(Q.val(), K.val(), V.val(), batch, heads, m, nullptr, dm, A.v, &ws->d0);
    const int h = heads;
    t.record([Q, K, V, A, batch, h, m, dm, ws] {
      train::ref::attention_backward<float>(Q.val(), K.val(), V.val(), batch, h, m, dm, A.grad(), Q.grad(), K.grad(), V.grad(),
                                            &ws->d0, &ws->d1);
    });
    auto O = seq::dropout(t, attention.fc_o(t, A), dr);
    return layer_norm(t, seq::add(t, q, O));
  }
};

/// models.grit.FeedForward: LN(x + Drop(fc2(Drop(relu(fc1 x))))).
template <class B>
struct train_ffn {
  train_linear<B> fc1, fc2;
  train_layer_norm<B> layer_norm;
  void init(int d, int dff) {
    fc1.init(d, dff);
    fc2.init(dff, d);
    layer_norm.init(d);
  }
  template <class V, class... S> static void fields(V& v, S&... s) {
    v.child("fc1", s.fc1...);
    v.child("fc2", s.fc2...);
    v.child("layer_norm", s.layer_norm...);
  }
  seq::tmat operator()(tape<B>& t, seq::tmat x, const seq::dropout_ctx& dr) const {
    auto h = seq::dropout(t, seq::relu(t, fc1(t, x)), dr);
    auto o = seq::dropout(t, fc2(t, h), dr);
    return layer_norm(t, seq::add(t, x, o));
  }
};

/// models.grit.TransformerLayer (grid_net.layers.i).
template <class B>
struct train_grid_layer {
  train_mha<B> mhatt;
  train_ffn<B> pwff;
  template <class V, class... S> static void fields(V& v, S&... s) {
    v.child("mhatt", s.mhatt...);
    v.child("pwff", s.pwff...);
  }
};

/// models.grit.GridFeatureNetwork.
template <class B>
struct train_grid_net {
  train_linear<B> fc;
  train_layer_norm<B> layer_norm;
  std::vector<train_grid_layer<B>> layers;
  template <class V, class... S> static void fields(V& v, S&... s) {
    v.child("fc", s.fc...);
    v.child("layer_norm", s.layer_norm...);
    v.child("layers", s.layers...);
  }
};

/// models.grit.ParallelAttentionLayer (cap_generator.layers.i).
template <class B>
struct train_parallel_layer {
  train_mha<B> self_att, vis_att1, vis_att2;
  train_ffn<B> pwff;
  train_linear<B> fc_alpha1, fc_alpha2;  // fc_alpha2: never used upstream (both gates use fc_alpha1)
  template <class V, class... S> static void fields(V& v, S&... s) {
    v.child("self_att", s.self_att...);
    v.child("pwff", s.pwff...);
    v.child("vis_att1", s.vis_att1...);
    v.child("vis_att2", s.vis_att2...);
    v.child("fc_alpha1", s.fc_alpha1...);
    v.child("fc_alpha2", s.fc_alpha2...);
  }
};

/// models.grit.CaptionGenerator ('parallel').
template <class B>
struct train_cap_generator {
  train_embedding<B> word_emb;
  frozen_embedding pos_emb;
  std::vector<train_parallel_layer<B>> layers;
  train_linear<B> fc;
  template <class V, class... S> static void fields(V& v, S&... s) {
    v.child("word_emb", s.word_emb...);
    v.child("pos_emb", s.pos_emb...);
    v.child("layers", s.layers...);
    v.child("fc", s.fc...);
  }
};

template <class B>
struct train_grit_transformer {
  train_grid_net<B> grid_net;
  train_cap_generator<B> cap_generator;
  template <class V, class... S> static void fields(V& v, S&... s) {
    v.child("grid_net", s.grid_net...);
    v.child("cap_generator", s.cap_generator...);
  }
};

// -------------------------------------------------------------------------------------------------
// The head
// -------------------------------------------------------------------------------------------------

/// What the train-mode head reads (all with the same batch size B).
struct grit_train_inputs {
  tview x17, x20, x23;  // P3/P4/P5 features (cv3 inputs), differentiable
  tview x11;            // PSA output (cv4 input), differentiable
  tview x44;            // stride-4 feature (cv5 input), differentiable
  std::array<cview<float>, 3> d3;  // one-to-one head raw maps [B, 4*16 + nc, H_l, W_l]: detached (selection only)
  cview<float> semantic;           // main semantic logits s2 [B, C, H/4, W/4]: detached (arg-max only)
  const std::int64_t* caps = nullptr;  // caption ids [B, seq_len] (BOS first, PAD-padded), teacher forcing
  int seq_len = 0;
  /// Optional grid key mask [B, (H/32) * (W/32)], nonzero = masked (upstream gri_mask from src_mask);
  /// null: none (training and predict/val always have none).
  const unsigned char* grid_mask = nullptr;

  /// The inputs from a train-mode vision forward (vision_train_outputs): x17.., d3 = head.d[2],
  /// semantic = head.s[1].
  template <class VO>
  static grit_train_inputs from_vision(const VO& o, const std::int64_t* caps, int seq_len) {
    grit_train_inputs in;
    in.x17 = o.x17.t;
    in.x20 = o.x20.t;
    in.x23 = o.x23.t;
    in.x11 = o.x11.t;
    in.x44 = o.x44.t;
    for (int l = 0; l < 3; ++l) in.d3[std::size_t(l)] = o.head.d[2][std::size_t(l)].t.val();
    in.semantic = o.head.s[1].t.val();
    in.caps = caps;
    in.seq_len = seq_len;
    return in;
  }
};

/// upstream's gri_mask for one image: src_mask [H, W] (true = padding) nearest-resized to the grid
/// [h, w] (F.interpolate(mode='nearest')), flattened row-major.
inline std::vector<unsigned char> grit_grid_mask(const unsigned char* src, int H, int W, int h, int w) {
  std::vector<unsigned char> m(std::size_t(h) * w);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      m[std::size_t(y) * w + x] = src[std::int64_t(train::ref::detail::nearest_src(y, H, h)) * W + train::ref::detail::nearest_src(x, W, w)];
  return m;
}

template <class B>
struct grit_train {
  static constexpr int reg_max = 16;
  grit_config cfg;
  train_grit_transformer<B> grit_transformer;
  std::array<std::array<train_conv<B>, 2>, 3> cv3;
  std::array<train_conv<B>, 2> cv4, cv5;

  /// Dropout probability of every upstream Dropout (upstream trains with 0.2); 0 = off (default).
  double dropout = 0.0;
  mutable std::mt19937_64 rng{0};
  /// Storage of the top-k region selection, reused across forwards (no allocation once grown).
  mutable train::ref::topk_anchor_workspace<float> topk_ws_;
  void set_dropout(double p, std::uint64_t seed) {
    GYOLO_CHECK(p >= 0 && p < 1, "grit_train: dropout must be in [0, 1)");
    dropout = p;
    rng.seed(seed);
  }

  /// Builds the head for config c and input channels ch = x17, x20, x23, x11, x44 (as
  /// grit_head::load: Grit's ch[:3], ch[-3], ch[-2]); parameters zero, LN/BN identity.
  GYOLO_COMPILED_ONCE void init(const grit_config& c, std::array<int, 5> ch) {
    c.validate();
    cfg = c;
    const int c3 = std::max(ch[0], 128), c4 = std::max(ch[3], 128), d = c.d_model;
    GYOLO_CHECK(c3 == d, "Grit: region feature width max(ch[0], 128) = " + std::to_string(c3) + " differs from d_model " + std::to_string(d));
    GYOLO_CHECK(c4 == c.grid_feat_dim, "Grit: grid feature width max(ch[-3], 128) = " + std::to_string(c4) +
                                           " differs from grid_feat_dim " + std::to_string(c.grid_feat_dim));
    for (int l = 0; l < 3; ++l) {
      cv3[std::size_t(l)][0].init_bn(ch[std::size_t(l)], c3, 1, 1, 1, act::silu);
      cv3[std::size_t(l)][1].init_bn(c3, c3, 1, 1, 1, act::silu);
    }
    cv4[0].init_bn(ch[3], c4, 1, 1, 1, act::silu);
    cv4[1].init_bn(c4, c4, 1, 1, 1, act::silu);
    cv5[0].init_bn(ch[4], c3, 1, 1, 1, act::silu);
    cv5[1].init_bn(c3, c3, 1, 1, 1, act::silu);
    auto& g = grit_transformer.grid_net;
    g.fc.init(c.grid_feat_dim, d);
    g.layer_norm.init(d);
    g.layers.resize(std::size_t(c.grid_layers));
    for (auto& l : g.layers) {
      l.mhatt.init(d, c.n_heads);
      l.pwff.init(d, c.d_ff);
    }
    auto& cg = grit_transformer.cap_generator;
    cg.word_emb.init(c.vocab_size, d);
    cg.pos_emb.init(c.max_len + 1, d);
    cg.layers.resize(std::size_t(c.decoder_layers));
    for (auto& l : cg.layers) {
      for (auto* m : {&l.self_att, &l.vis_att1, &l.vis_att2}) m->init(d, c.n_heads);
      l.pwff.init(d, c.d_ff);
      l.fc_alpha1.init(2 * d, d);
      l.fc_alpha2.init(2 * d, d);
    }
    cg.fc.init(d, c.vocab_size, /*bias=*/false);
  }

  /// upstream Grit's state_dict order: grit_transformer, cv3, cv4, cv5. The inference head
  /// (`grit_head<B>`, layers/grit.hpp) mirrors these members and is folded from this description.
  template <class V, class... S> static void fields(V& v, S&... s) {
    v.value("cfg", s.cfg...);
    v.child("grit_transformer", s.grit_transformer...);
    v.child("cv3", s.cv3...);
    v.child("cv4", s.cv4...);
    v.child("cv5", s.cv5...);
  }

  /// Teacher-forced forward: log-probabilities [B, seq_len, 1, V] (log_softmax over the
  /// vocabulary; row t predicts token t + 1). Backward accumulates into every parameter's gradient
  /// and into the features' gradient buffers.
  GYOLO_COMPILED_ONCE tvar forward(tape<B>& t, const grit_train_inputs& in) const {
    const int Bn = in.x17.n, d = cfg.d_model, V = cfg.vocab_size, L = in.seq_len;
    check_inputs(in);
    const seq::dropout_ctx dr{dropout, &rng};

    // ---- feature adapters on the full maps (train-mode BN statistics) ----
    std::array<tvar, 3> R;
    const std::array<tview, 3> xl{in.x17, in.x20, in.x23};
    for (int l = 0; l < 3; ++l) R[std::size_t(l)] = cv3[std::size_t(l)][1](t, cv3[std::size_t(l)][0](t, xl[std::size_t(l)]).cv());
    auto G = cv4[1](t, cv4[0](t, in.x11).cv());
    auto S = cv5[1](t, cv5[0](t, in.x44).cv());

    // ---- region tokens: top-k anchors (detached d3), semantic arg-max (detached s2) ----
    const int k = cfg.topk, ns = in.semantic.c, nr = k + ns;
    auto Y2 = seq::alloc(t, Bn * nr, d);
    // Gather jobs (image, source, first entry, entry count; source 0..2 = cv3 level, 3 = cv5) over
    // flat position / row lists, all tape-owned: at most 4 jobs and nr entries per image.
    int* jobs = t.save_i32(std::size_t(Bn) * 4 * 4);
    std::int64_t* jpos = t.save_i64(std::size_t(Bn) * std::size_t(nr));
    int* jrows = t.save_i32(std::size_t(Bn) * std::size_t(nr));
    int njobs = 0, nent = 0;
    auto add_job = [&](int img, int src, int first) {
      if (nent == first) return;  // empty
      int* j = jobs + 4 * njobs++;
      j[0] = img;
      j[1] = src;
      j[2] = first;
      j[3] = nent - first;
    };
    std::array<std::int64_t, 4> a0{};
    for (int l = 1; l < 3; ++l) a0[std::size_t(l)] = a0[std::size_t(l - 1)] + R[std::size_t(l - 1)].t.plane();
    a0[3] = a0[2] + R[2].t.plane();
    for (int b = 0; b < Bn; ++b) {
      train::ref::select_topk_anchors<float>(in.d3, b, reg_max, k, topk_ws_);
      const auto& idx = topk_ws_.idx;
      for (int l = 0; l < 3; ++l) {
        const int first = nent;
        for (int r = 0; r < k; ++r)
          if (idx[std::size_t(r)] >= a0[std::size_t(l)] && idx[std::size_t(r)] < a0[std::size_t(l) + 1]) {
            jpos[nent] = idx[std::size_t(r)] - a0[std::size_t(l)];
            jrows[nent++] = b * nr + r;
          }
        add_job(b, l, first);
      }
      const int first = nent;
      train::ref::semantic_argmax<float>(in.semantic, b, jpos + first);
      for (int c = 0; c < ns; ++c) jrows[nent++] = b * nr + k + c;
      add_job(b, 3, first);
    }
    auto src_of = [R, S](int s) { return s < 3 ? R[std::size_t(s)].t : S.t; };
    for (int i = 0; i < njobs; ++i) {
      const int* j = jobs + 4 * i;
      train::ref::gather_tokens<float>(cview<float>(src_of(j[1]).val()), j[0], jpos + j[2], std::size_t(j[3]), jrows + j[2], Y2.v);
    }
    t.record([jobs, njobs, jpos, jrows, Y2, src_of] {
      for (int i = 0; i < njobs; ++i) {
        const int* j = jobs + 4 * i;
        const tview s = src_of(j[1]);
        if (s.has_grad())
          train::ref::gather_tokens_backward<float>(Y2.grad(), j[0], jpos + j[2], std::size_t(j[3]), jrows + j[2], s.grad());
      }
    });

    // ---- grid tokens: cv4 output flattened row-major, then grid_net ----
    const int ng = int(G.t.plane()), gd = G.t.c;
    auto X = seq::alloc(t, Bn * ng, gd);
    std::int64_t* all = t.save_i64(std::size_t(ng));
    for (int i = 0; i < ng; ++i) all[i] = i;
    for (int b = 0; b < Bn; ++b)
      train::ref::gather_tokens<float>(cview<float>(G.t.val()), b, all, std::size_t(ng), nullptr, X.middle_rows(b * ng, ng).v);
    t.record([X, G, all, Bn, ng] {
      for (int b = 0; b < Bn; ++b)
        train::ref::gather_tokens_backward<float>(X.middle_rows(b * ng, ng).grad(), b, all, std::size_t(ng), nullptr, G.t.grad());
    });
    const unsigned char* gmask = nullptr;  // tape-owned copy of the caller's mask
    if (in.grid_mask) {
      unsigned char* m = t.save_u8(std::size_t(Bn) * std::size_t(ng));
      std::copy(in.grid_mask, in.grid_mask + std::int64_t(Bn) * ng, m);
      gmask = m;
    }
    const train::ref::attn_mask gm{nullptr, ng, 0};
    const auto& gn = grit_transformer.grid_net;
    auto Y1 = gn.layer_norm(t, seq::dropout(t, seq::relu(t, gn.fc(t, X)), dr));
    for (const auto& l : gn.layers) Y1 = l.pwff(t, l.mhatt(t, Y1, Y1, Bn, gmask, gm, dr), dr);

    // ---- caption decoder, teacher-forced ----
    const auto& cg = grit_transformer.cap_generator;
    // ids, positions, row mask and self-attention mask: tape-owned (read by the backward steps)
    const std::size_t nt = std::size_t(Bn) * std::size_t(L);
    std::int64_t* ids = t.save_i64(nt);
    std::copy(in.caps, in.caps + std::int64_t(nt), ids);
    std::int64_t* pos = t.save_i64(nt);
    float* mask_pad = t.save(nt);
    unsigned char* mask_x = t.save_u8(nt * std::size_t(L));
    for (int b = 0; b < Bn; ++b)
      for (int i = 0; i < L; ++i) {
        const std::size_t r = std::size_t(b) * L + std::size_t(i);
        const bool pad = ids[r] == cfg.pad;
        pos[r] = pad ? 0 : i + 1;
        mask_pad[r] = pad ? 0.0f : 1.0f;
        for (int j = 0; j < L; ++j) mask_x[(r * L) + std::size_t(j)] = j > i || ids[std::size_t(b) * L + std::size_t(j)] == cfg.pad;
      }
    auto x = seq::alloc(t, Bn * L, d);
    train::ref::embedding<float>(ids, cg.word_emb.w.value.data(), V, x.v);
    train::ref::embedding<float>(pos, cg.pos_emb.w.value.data(), cfg.max_len + 1, x.v, true);
    const std::int64_t pad_idx = cfg.pad;
    t.record([this, x, ids, pad_idx] {
      train::ref::embedding_backward<float>(ids, x.grad(), grit_transformer.cap_generator.word_emb.w.g(), pad_idx);
    });
    const train::ref::attn_mask sm{nullptr, std::int64_t(L) * L, L}, none{};
    const float* mp = mask_pad;
    for (const auto& ly : cg.layers) {
      auto A = seq::mul_rows(t, ly.self_att(t, x, x, Bn, mask_x, sm, dr), mp);
      auto E1 = seq::mul_rows(t, ly.vis_att1(t, A, Y1, Bn, gmask, gm, dr), mp);
      auto E2 = seq::mul_rows(t, ly.vis_att2(t, A, Y2, Bn, nullptr, none, dr), mp);
      auto a1 = seq::sigmoid(t, ly.fc_alpha1(t, seq::concat_cols(t, A, E1)));
      auto a2 = seq::sigmoid(t, ly.fc_alpha1(t, seq::concat_cols(t, A, E2)));  // fc_alpha1 again (upstream)
      auto E = seq::mul_rows(t, seq::gate_mix(t, E1, a1, E2, a2, std::sqrt(2.0)), mp);
      x = seq::mul_rows(t, ly.pwff(t, E, dr), mp);
    }
    auto logits = cg.fc(t, x);
    auto out = t.alloc({Bn, L, 1, V});
    seq::log_softmax(t, logits, seq::tmat{as_mat(out.t.data, Bn * L, V), out.t.gdata});
    return out;
  }

 private:
  void check_inputs(const grit_train_inputs& in) const {
    const int n = in.x17.n;
    GYOLO_CHECK(n > 0 && in.x20.n == n && in.x23.n == n && in.x11.n == n && in.x44.n == n && in.semantic.n == n &&
                    in.d3[0].n == n && in.d3[1].n == n && in.d3[2].n == n,
                "grit_train: missing or inconsistent inputs");
    GYOLO_CHECK(in.x17.c == cv3[0][0].d.cin && in.x20.c == cv3[1][0].d.cin && in.x23.c == cv3[2][0].d.cin &&
                    in.x11.c == cv4[0].d.cin && in.x44.c == cv5[0].d.cin,
                "grit_train: feature channels do not match the Grit adapters");
    const std::array<tview, 3> lv{in.x17, in.x20, in.x23};
    for (int l = 0; l < 3; ++l)
      GYOLO_CHECK(in.d3[std::size_t(l)].plane() == lv[std::size_t(l)].plane(), "grit_train: head map and feature sizes differ");
    GYOLO_CHECK(in.semantic.plane() == in.x44.plane(), "grit_train: semantic map and x44 sizes differ");
    GYOLO_CHECK(in.caps && in.seq_len >= 1 && in.seq_len <= cfg.max_len, "grit_train: caption length must be in [1, max_len]");
    for (std::int64_t i = 0; i < std::int64_t(n) * in.seq_len; ++i)
      GYOLO_CHECK(in.caps[i] >= 0 && in.caps[i] < cfg.vocab_size, "grit_train: caption token out of range");
  }
};

/// upstream ComputeCaptionLoss (utils/caption/loss_tal_dual.py): NLL(logp[:, :-1], caps[:, 1:])
/// averaged over the non-PAD targets, times `gain` (hyp caption_loss_gain, 0.1) and times the batch
/// size (the value train.py backpropagates). Adds d(loss)/d(logp) into logp's gradient and returns
/// the loss (NaN, and no gradient, when every target is PAD: torch's 0/0).
inline double caption_nll(tview logp, const std::int64_t* caps, std::int64_t pad, double gain) {
  const int Bn = logp.n, L = logp.c, V = logp.w;
  std::int64_t count = 0;
  double sum = 0;
  for (int b = 0; b < Bn; ++b)
    for (int t = 0; t + 1 < L; ++t) {
      const std::int64_t y = caps[std::int64_t(b) * L + t + 1];
      if (y == pad) continue;
      GYOLO_CHECK(y >= 0 && y < V, "caption_nll: target out of range");
      sum -= double(logp.channel(b, t)[y]);
      ++count;
    }
  if (count == 0) return std::nan("");
  const double scale = gain * Bn;
  if (logp.has_grad()) {
    const float g = float(-scale / double(count));
    for (int b = 0; b < Bn; ++b)
      for (int t = 0; t + 1 < L; ++t) {
        const std::int64_t y = caps[std::int64_t(b) * L + t + 1];
        if (y != pad) logp.grad().channel(b, t)[y] += g;
      }
  }
  return sum / double(count) * scale;
}

/// Compiled once in gyolo's library (src/caption_cpu.cpp).
extern template struct grit_train<cpu>;

}  // namespace gyolo
