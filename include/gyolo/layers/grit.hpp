// Grit caption head (layer 56; spec §6): feature adapters, detection- and semantics-guided region
// tokens, grid tokens through grid_net, and the 'parallel' caption decoder driven by upstream's
// beam search. Layer math only: the GEMMs, LayerNorms, attention, softmax and the token data
// movement come from tkernels<B> (kernels/transformer.hpp) and the convolutions from kernels<B>;
// the activations live in token_buffer<B>. The same code runs on the host backends and on CUDA.
// On a device backend the host keeps what is small and sequential: the top-k ranking of the anchor
// scores (the scores are computed on the device, A floats come back), the beam search's bookkeeping
// (each step's log-probs come back: rows x vocabulary floats) and the PAD mask of the self-attention.
//
// Differences from upstream that do not change the result:
//  - cv3 and cv5 are pointwise (1x1 convs), so they run only at the 300 + 173 gathered positions;
//  - the cross-attention keys/values of the grid and region tokens are projected once per image
//    and shared by every step and beam (upstream re-projects them at every step);
//  - the decoder's self-attention caches projected keys/values per beam (upstream caches the layer
//    inputs and re-projects them);
//  - finished beams (previous word EOS) are not run: upstream discards their scores;
//  - masks are all False in predict/val (spec §6.3/§6.4) and are not built; the PAD key mask of
//    the decoder's self-attention is kept.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "gyolo/core/compiled_once.hpp"
#include "gyolo/kernels/transformer.hpp"
#include "gyolo/layers/conv.hpp"
#include "gyolo/layers/grit_train.hpp"
#include "gyolo/nn/module.hpp"
#include "gyolo/text/beam_search.hpp"
#include "gyolo/train/ops_seq.hpp"

namespace gyolo {

// -------------------------------------------------------------------------------------------------
// The inference form. Grit's structure (tensor names, shapes, state_dict order) is described once,
// by the train-mode module grit_train<B> (layers/grit_train.hpp: init() and fields()); the types
// below mirror its member names, so the lockstep walk nn::fold turns a loaded grit_train into a
// grit_head. Only the leaves are folded here (fold_leaf: Linear -> packed linear, LayerNorm,
// Embedding tables, Conv+BN through layers/conv_train.hpp); nothing here names a tensor.
// -------------------------------------------------------------------------------------------------

template <class B>
struct linear_layer {
  dparam<B> w, b;    // torch layout [out, in] (dropped where the backend keeps only its packing)
  linear_pack pack;  // backend packing (tkernels<B>::prepack_linear)
  int in = 0, out = 0;
  linear_params params() const {
    return {w.empty() ? nullptr : w.data(), b.empty() ? nullptr : b.data(), out, in, pack.wt.empty() ? nullptr : pack.wt.data()};
  }
  void operator()(context<B>& ctx, cmview x, mview y, act a = act::none) const { tkernels<B>::linear(ctx, x, params(), y, a); }
};

// The train form's backend BT may differ from the inference one (a device backend folds a host
// train form, as the vision graph does).
template <class BT, class B>
void fold_leaf(const train_linear<BT>& t, linear_layer<B>& i) {
  i.in = t.in;
  i.out = t.out;
  i.pack = tkernels<B>::prepack_linear(t.w.value, t.out, t.in);
  i.w = tkernels<B>::packed_only ? dparam<B>{} : storage<B>::upload(t.w.value);
  i.b = t.bias ? storage<B>::upload(t.b.value) : dparam<B>{};
}

template <class B>
struct layer_norm_layer {
  dparam<B> g, b;
  float eps = 1e-5f;
  /// y = LN(x + r); r may be empty.
  void operator()(context<B>& ctx, cmview x, cmview r, mview y) const { tkernels<B>::add_layernorm(ctx, x, r, g.data(), b.data(), eps, y); }
};

template <class BT, class B>
void fold_leaf(const train_layer_norm<BT>& t, layer_norm_layer<B>& i) {
  i.g = storage<B>::upload(t.g.value);
  i.b = storage<B>::upload(t.b.value);
}

/// An embedding table [n, d] (nn.Embedding, trainable or frozen), in backend B's memory.
template <class B>
struct embedding_table {
  dparam<B> w;
  const float* row(std::int64_t r, int d) const { return w.data() + r * d; }
};

template <class BT, class B>
void fold_leaf(const train_embedding<BT>& t, embedding_table<B>& i) {
  i.w = storage<B>::upload(t.w.value);
}
template <class B>
void fold_leaf(const frozen_embedding& t, embedding_table<B>& i) {
  i.w = storage<B>::upload(t.w.value);
}

/// models.grit.Attention: fc_q, fc_k, fc_v, fc_o.
template <class B>
struct attention_layer {
  linear_layer<B> fc_q, fc_k, fc_v, fc_o;
};

/// models.grit.MultiHeadAttention (+ its Attention): LN(q + fc_o(MHA(fc_q q, fc_k k, fc_v v))).
template <class B>
struct mha_layer {
  attention_layer<B> attention;
  layer_norm_layer<B> layer_norm;
};

/// models.grit.FeedForward: LN(x + fc2(relu(fc1(x)))).
template <class B>
struct ffn_layer {
  linear_layer<B> fc1, fc2;
  layer_norm_layer<B> layer_norm;
  /// y = FFN(x); h is [rows, d_ff] scratch, y [rows, d] (may not alias x).
  void operator()(context<B>& ctx, cmview x, mview h, mview y) const {
    fc1(ctx, x, h, act::relu);
    fc2(ctx, h, y);
    layer_norm(ctx, y, x, y);
  }
};

/// models.grit.TransformerLayer (grid_net.layers.i).
template <class B>
struct grid_layer {
  mha_layer<B> mhatt;
  ffn_layer<B> pwff;
};

/// models.grit.GridFeatureNetwork.
template <class B>
struct grid_network {
  linear_layer<B> fc;
  layer_norm_layer<B> layer_norm;
  std::vector<grid_layer<B>> layers;
};

/// One ParallelAttentionLayer of the caption decoder.
template <class B>
struct decoder_layer {
  mha_layer<B> self_att, vis_att1, vis_att2;
  ffn_layer<B> pwff;
  linear_layer<B> fc_alpha1;  // used for both gates (upstream quirk)
  nn::dropped fc_alpha2;      // never used upstream: not kept
};

/// models.grit.CaptionGenerator ('parallel').
template <class B>
struct caption_generator {
  embedding_table<B> word_emb, pos_emb;
  std::vector<decoder_layer<B>> layers;
  linear_layer<B> fc;  // logits (no bias)
};

template <class B>
struct grit_transformer_layers {
  grid_network<B> grid_net;
  caption_generator<B> cap_generator;
};

/// What the head reads from the vision graph (all batch-major, same batch size), in memory space S.
template <class S>
struct basic_grit_inputs {
  using cv = view<const float, S>;
  cv x17, x20, x23;         // P3/P4/P5 features (cv3 inputs)
  cv x11;                   // PSA output (cv4 input)
  cv x44;                   // stride-4 feature (cv5 input)
  std::array<cv, 3> d3;     // raw one-to-one head maps [B, 4*16 + nc, H_l, W_l]
  cv semantic;              // semantic logits [B, 173, H/4, W/4]
};
using grit_inputs = basic_grit_inputs<host_space>;

/// Per-image visual tokens (token-major rows of d_model floats in a token buffer Buf).
template <class Buf>
struct basic_grit_tokens {
  int n_grid = 0, n_region = 0;
  Buf grid;      // [n_grid, d]: grid_net output (Y1)
  Buf region;    // [topk + sem_ch, d]: region tokens (Y2)
  std::vector<std::int64_t> topk_index;    // anchors of the top-k region tokens (torch.topk order)
  std::vector<std::int64_t> semantic_pos;  // per semantic class: arg-max position (h * W/4 + w)
};
using grit_tokens = basic_grit_tokens<std::vector<float>>;

template <class B>
class grit_head {
  using tk = tkernels<B>;
  using buf = token_buffer<B>;
  /// The backend of the train form that load() reads and folds (a host one for device backends).
  using train_b = std::conditional_t<is_host_backend<B>, B, reference>;

 public:
  using inputs = basic_grit_inputs<typename B::space>;
  using tokens = basic_grit_tokens<buf>;
  static constexpr int reg_max = grit_train<train_b>::reg_max;
  // The members mirror grit_train<B> (nn::fold walks both in lockstep).
  grit_config cfg;
  grit_transformer_layers<B> grit_transformer;
  std::array<std::array<conv_layer<B>, 2>, 3> cv3;
  std::array<conv_layer<B>, 2> cv4, cv5;

  bool loaded() const { return loaded_; }
  /// Called by nn::fold once every member is folded.
  void after_fold() { loaded_ = true; }

  /// fold(load(train form)): builds grit_train for config c and input channels ch (x17, x20, x23,
  /// x11, x44: Grit's ch[:3], ch[-3], ch[-2]), reads upstream's tensors under prefix p (names and
  /// shapes from grit_train::fields) and folds them (Conv+BN; Linear packed for the backend).
  GYOLO_COMPILED_ONCE void load(weight_source& ws, const std::string& p, const grit_config& c, std::array<int, 5> ch) {
    grit_train<train_b> t;
    t.init(c, ch);
    nn::load_tensors(t, ws, p);
    nn::fold_walker w;
    w.fold_into(t, *this);
  }

  // ---------------------------------------------------------------------------------------------
  // Region and grid tokens
  // ---------------------------------------------------------------------------------------------

  /// Per anchor of image i (levels in order): the maximum raw class logit of the one-to-one head,
  /// the score select_regions ranks by (train::ref::region_scores, shared with training).
  static std::vector<float> region_scores(const std::array<cview<float>, 3>& d3, int i) {
    return train::ref::region_scores<float>(d3, i, reg_max);
  }

  /// Top-k anchors of image i by region_scores (torch.topk order, ties included; the selection
  /// train-mode Grit makes: train::ref::select_topk_anchors). Host maps.
  std::vector<std::int64_t> select_regions(const std::array<cview<float>, 3>& d3, int i) const {
    return train::ref::select_topk_anchors<float>(d3, i, reg_max, cfg.topk, topk_hint);
  }
  /// The same on the backend's maps: the scores from tkernels<B>::region_scores, ranked on the host.
  std::vector<std::int64_t> select_regions(context<B>& ctx, const std::array<typename inputs::cv, 3>& d3, int i) const {
    std::vector<torch_order::elem> work;
    std::vector<std::int64_t> idx;
    train::ref::topk_anchors(tk::region_scores(ctx, d3, i, reg_max), cfg.topk, work, idx, topk_hint);
    return idx;
  }

  /// Per semantic channel c of image i: the first flat position of its maximum (torch max(dim)).
  static std::vector<std::int64_t> semantic_argmax(cview<float> sem, int i) { return train::ref::semantic_argmax<float>(sem, i); }

  /// Region tokens [topk + sem_ch, d] of image i: cv3[l] at the selected anchors, then cv5 at the
  /// semantic arg-max positions (both 1x1 conv stacks, evaluated only where they are read).
  buf region_tokens(context<B>& ctx, const inputs& in, int i, const std::vector<std::int64_t>& topk,
                    const std::vector<std::int64_t>& sem_pos) const {
    const int d = cfg.d_model;
    const int n = int(topk.size()), ns = int(sem_pos.size());
    buf out = token_store<B>::make(ctx, std::size_t(n + ns) * d);
    const std::array<typename inputs::cv, 3> lv{in.x17, in.x20, in.x23};
    std::int64_t a0 = 0;
    for (int l = 0; l < 3; ++l) {
      const std::int64_t hw = lv[l].plane();
      std::vector<int> rows;
      std::vector<std::int64_t> at;
      for (int k = 0; k < n; ++k)
        if (topk[k] >= a0 && topk[k] < a0 + hw) {
          rows.push_back(k);
          at.push_back(topk[k] - a0);
        }
      if (!rows.empty()) gather_conv(ctx, lv[l], i, at, cv3[l], as_mat(out.data(), n + ns, d), rows, 0);
      a0 += hw;
    }
    GYOLO_CHECK(a0 >= n, "Grit: anchor count mismatch");
    for (auto s : topk) GYOLO_CHECK(s >= 0 && s < a0, "Grit: region index out of range");
    std::vector<int> rows(static_cast<std::size_t>(ns));
    for (int k = 0; k < ns; ++k) rows[k] = k;
    for (auto s : sem_pos) GYOLO_CHECK(s >= 0 && s < in.x44.plane(), "Grit: semantic position out of range");
    if (ns) gather_conv(ctx, in.x44, i, sem_pos, cv5, as_mat(out.data(), n + ns, d), rows, n);
    return out;
  }

  /// cv4 output of image i as tokens [H/32 * W/32, grid_feat_dim] (row-major spatial order).
  GYOLO_COMPILED_ONCE buf grid_features(context<B>& ctx, typename inputs::cv x11, int i) const {
    auto t = cv4[1](ctx, cv4[0](ctx, x11.batch(i)).cv());
    const int c = t.shape().c;
    const std::int64_t hw = t.shape().h * std::int64_t(t.shape().w);
    buf g = token_store<B>::make(ctx, std::size_t(hw * c));
    tk::columns_to_rows(ctx, t.cv(), {}, 0, as_mat(g.data(), int(hw), c));
    return g;
  }

  /// grid_net (GridFeatureNetwork): LN(relu(fc(G))) then post-LN transformer layers. G is
  /// [n, grid_feat_dim]; returns [n, d].
  GYOLO_COMPILED_ONCE buf grid_net(context<B>& ctx, const buf& G) const {
    const int d = cfg.d_model, n = int(token_store<B>::size(G) / std::size_t(cfg.grid_feat_dim));
    auto mk = [&](int cols) { return token_store<B>::make(ctx, std::size_t(n) * cols); };
    buf x = mk(d), q = mk(d), k = mk(d), v = mk(d), a = mk(d), o = mk(d), h = mk(cfg.d_ff);
    const auto& gn = grit_transformer.grid_net;
    gn.fc(ctx, as_cmat(G.data(), n, cfg.grid_feat_dim), as_mat(x.data(), n, d), act::relu);
    gn.layer_norm(ctx, as_cmat(x.data(), n, d), {}, as_mat(x.data(), n, d));
    for (const auto& gl : gn.layers) {
      const auto& m = gl.mhatt;
      auto X = as_cmat(x.data(), n, d);
      m.attention.fc_q(ctx, X, as_mat(q.data(), n, d));
      m.attention.fc_k(ctx, X, as_mat(k.data(), n, d));
      m.attention.fc_v(ctx, X, as_mat(v.data(), n, d));
      tkernels<B>::attention(ctx, as_cmat(q.data(), n, d), as_cmat(k.data(), n, d), as_cmat(v.data(), n, d), cfg.n_heads,
                             as_mat(a.data(), n, d));
      m.attention.fc_o(ctx, as_cmat(a.data(), n, d), as_mat(o.data(), n, d));
      m.layer_norm(ctx, X, as_cmat(o.data(), n, d), as_mat(a.data(), n, d));       // a = LN(x + att)
      gl.pwff(ctx, as_cmat(a.data(), n, d), as_mat(h.data(), n, cfg.d_ff), as_mat(x.data(), n, d));
    }
    return x;
  }

  /// Grid and region tokens of image i.
  GYOLO_COMPILED_ONCE tokens encode(context<B>& ctx, const inputs& in, int i) const {
    tokens t;
    t.topk_index = select_regions(ctx, in.d3, i);
    t.semantic_pos = tk::semantic_argmax(ctx, in.semantic, i);
    t.region = region_tokens(ctx, in, i, t.topk_index, t.semantic_pos);
    t.n_region = int(t.topk_index.size() + t.semantic_pos.size());
    t.grid = grid_net(ctx, grid_features(ctx, in.x11, i));
    t.n_grid = int(token_store<B>::size(t.grid) / std::size_t(cfg.d_model));
    return t;
  }

  // ---------------------------------------------------------------------------------------------
  // Decoder
  // ---------------------------------------------------------------------------------------------

  /// The caption decoder as a beam_scorer: per-image cross-attention keys/values projected once,
  /// per-row self-attention caches, all buffers sized at construction (no allocation per step).
  /// Its activations are token buffers of B; each step's log-probs are copied to the host rows the
  /// beam search reads.
  class decoder {
   public:
    decoder(const grit_head& h, context<B>& ctx, const std::vector<tokens>& toks)
        : h_(h), ctx_(ctx), ni_(int(toks.size())), d_(h.cfg.d_model), V_(h.cfg.vocab_size), L_(h.cfg.beam_len),
          R_(ni_ * h.cfg.beam_size) {
      const int d = d_, nl = int(h.grit_transformer.cap_generator.layers.size());
      auto mk = [&](std::size_t n) { return token_store<B>::make(ctx, n); };
      vis_.resize(static_cast<std::size_t>(nl));
      for (int l = 0; l < nl; ++l) {
        const auto& ly = h.grit_transformer.cap_generator.layers[std::size_t(l)];
        auto& vk = vis_[std::size_t(l)];
        vk.resize(static_cast<std::size_t>(ni_));
        for (int i = 0; i < ni_; ++i) {
          const auto& t = toks[std::size_t(i)];
          auto& e = vk[std::size_t(i)];
          e.ng = t.n_grid;
          e.nr = t.n_region;
          for (auto* b : {&e.k1, &e.v1}) *b = mk(std::size_t(t.n_grid) * d);
          for (auto* b : {&e.k2, &e.v2}) *b = mk(std::size_t(t.n_region) * d);
          auto G = as_cmat(t.grid.data(), t.n_grid, d), Rg = as_cmat(t.region.data(), t.n_region, d);
          ly.vis_att1.attention.fc_k(ctx, G, as_mat(e.k1.data(), t.n_grid, d));
          ly.vis_att1.attention.fc_v(ctx, G, as_mat(e.v1.data(), t.n_grid, d));
          ly.vis_att2.attention.fc_k(ctx, Rg, as_mat(e.k2.data(), t.n_region, d));
          ly.vis_att2.attention.fc_v(ctx, Rg, as_mat(e.v2.data(), t.n_region, d));
        }
      }
      const std::size_t cache = std::size_t(nl) * R_ * L_ * d;
      for (auto* b : {&kc_, &vc_, &kc2_, &vc2_}) *b = mk(cache);
      padk_.assign(std::size_t(R_) * L_, 0);
      padk2_.assign(padk_.size(), 0);
      for (auto* b : {&x_, &q_, &k_, &v_, &att_, &a_, &q1_, &q2_, &e1_, &e2_, &o_, &mix_, &y_}) *b = mk(std::size_t(R_) * d);
      for (auto* b : {&cat_, &al_}) *b = mk(std::size_t(R_) * 2 * d);
      h_ff_ = mk(std::size_t(R_) * h.cfg.d_ff);
      logits_ = mk(std::size_t(R_) * V_);
      rows_.resize(static_cast<std::size_t>(R_));
      ids_.resize(static_cast<std::size_t>(R_));
      img_begin_.resize(std::size_t(ni_) + 1);
      was_active_.assign(std::size_t(R_), 0);
    }

    void step(int t, int rows_per_image, std::span<const std::int64_t> in, std::span<const unsigned char> active, float* logp) {
      GYOLO_CHECK(t < L_, "decoder: too many steps");
      const int d = d_, nrow = ni_ * rows_per_image;
      int n = 0;
      for (int i = 0; i < ni_; ++i) {
        img_begin_[std::size_t(i)] = n;
        for (int b = 0; b < rows_per_image; ++b) {
          const int r = i * rows_per_image + b;
          if (active[std::size_t(r)]) rows_[std::size_t(n++)] = r;
        }
      }
      img_begin_[std::size_t(ni_)] = n;
      for (int r = 0; r < nrow; ++r) was_active_[std::size_t(r)] = active[std::size_t(r)];
      steps_ = t + 1;
      if (n == 0) return;
      const auto& cg = h_.grit_transformer.cap_generator;
      for (int j = 0; j < n; ++j) {
        const std::int64_t w = in[std::size_t(rows_[std::size_t(j)])];
        GYOLO_CHECK(w >= 0 && w < V_, "decoder: input token out of range");
        ids_[std::size_t(j)] = w;
      }
      auto M = [&](buf& b, int cols = 0) { return as_mat(b.data(), n, cols ? cols : d); };
      auto C = [&](const buf& b, int cols = 0) { return as_cmat(b.data(), n, cols ? cols : d); };
      auto row = [&](const buf& b, int j, int cols = 0) { return as_cmat(b.data() + std::size_t(j) * (cols ? cols : d), 1, cols ? cols : d); };
      auto mrow = [&](buf& b, int j, int cols = 0) { return as_mat(b.data() + std::size_t(j) * (cols ? cols : d), 1, cols ? cols : d); };
      // x = word embedding + position t + 1 (BOS is 1)
      tk::embed(ctx_, cg.word_emb.row(0, d), std::span<const std::int64_t>(ids_.data(), std::size_t(n)), cg.pos_emb.row(t + 1, d), M(x_));
      for (std::size_t l = 0; l < cg.layers.size(); ++l) {
        const auto& ly = cg.layers[l];
        // Self-attention over this row's inputs so far (PAD inputs are masked keys).
        ly.self_att.attention.fc_q(ctx_, C(x_), M(q_));
        ly.self_att.attention.fc_k(ctx_, C(x_), M(k_));
        ly.self_att.attention.fc_v(ctx_, C(x_), M(v_));
        for (int j = 0; j < n; ++j) {
          const int r = rows_[std::size_t(j)];
          float* kc = cache(kc_, l, r);
          float* vc = cache(vc_, l, r);
          tk::copy(ctx_, row(k_, j), as_mat(kc + std::size_t(t) * d, 1, d));
          tk::copy(ctx_, row(v_, j), as_mat(vc + std::size_t(t) * d, 1, d));
          unsigned char* pk = padk_.data() + std::size_t(r) * L_;
          pk[t] = in[std::size_t(r)] == h_.cfg.pad;
          tk::attention(ctx_, row(q_, j), as_cmat(kc, t + 1, d), as_cmat(vc, t + 1, d), h_.cfg.n_heads, mrow(att_, j), pk);
        }
        ly.self_att.attention.fc_o(ctx_, C(att_), M(o_));
        ly.self_att.layer_norm(ctx_, C(x_), C(o_), M(a_));  // A = LN(x + self-attention)
        // Parallel cross-attention to the grid (vis_att1) and region (vis_att2) tokens.
        ly.vis_att1.attention.fc_q(ctx_, C(a_), M(q1_));
        ly.vis_att2.attention.fc_q(ctx_, C(a_), M(q2_));
        const auto& vk = vis_[l];
        for (int i = 0; i < ni_; ++i) {
          const int j0 = img_begin_[std::size_t(i)], nj = img_begin_[std::size_t(i) + 1] - j0;
          if (!nj) continue;
          const auto& e = vk[std::size_t(i)];
          tk::attention(ctx_, as_cmat(q1_.data() + std::size_t(j0) * d, nj, d), as_cmat(e.k1.data(), e.ng, d), as_cmat(e.v1.data(), e.ng, d),
                        h_.cfg.n_heads, as_mat(e1_.data() + std::size_t(j0) * d, nj, d));
          tk::attention(ctx_, as_cmat(q2_.data() + std::size_t(j0) * d, nj, d), as_cmat(e.k2.data(), e.nr, d), as_cmat(e.v2.data(), e.nr, d),
                        h_.cfg.n_heads, as_mat(e2_.data() + std::size_t(j0) * d, nj, d));
        }
        ly.vis_att1.attention.fc_o(ctx_, C(e1_), M(o_));
        ly.vis_att1.layer_norm(ctx_, C(a_), C(o_), M(e1_));  // E1 = LN(A + att1)
        ly.vis_att2.attention.fc_o(ctx_, C(e2_), M(o_));
        ly.vis_att2.layer_norm(ctx_, C(a_), C(o_), M(e2_));  // E2 = LN(A + att2)
        // Gates: both use fc_alpha1 on [A, E].
        const auto cat = M(cat_, 2 * d);
        tk::copy(ctx_, C(a_), cat.middle_cols(0, d));
        tk::copy(ctx_, C(e1_), cat.middle_cols(d, d));
        ly.fc_alpha1(ctx_, C(cat_, 2 * d), as_mat(al_.data(), n, d), act::sigmoid);
        tk::copy(ctx_, C(e2_), cat.middle_cols(d, d));
        ly.fc_alpha1(ctx_, C(cat_, 2 * d), as_mat(al_.data() + std::size_t(n) * d, n, d), act::sigmoid);
        tk::gate_mix(ctx_, C(e1_), as_cmat(al_.data(), n, d), C(e2_), as_cmat(al_.data() + std::size_t(n) * d, n, d), M(mix_));
        ly.pwff(ctx_, C(mix_), M(h_ff_, h_.cfg.d_ff), M(y_));
        // mask_pad: a PAD input row outputs zeros.
        for (int j = 0; j < n; ++j)
          if (in[std::size_t(rows_[std::size_t(j)])] == h_.cfg.pad) tk::fill(ctx_, mrow(y_, j), 0.f);
        std::swap(x_, y_);
      }
      cg.fc(ctx_, C(x_), as_mat(logits_.data(), n, V_));
      tk::log_softmax(ctx_, as_cmat(logits_.data(), n, V_), as_mat(logits_.data(), n, V_));
      tk::download_rows(ctx_, as_cmat(logits_.data(), n, V_), std::span<const int>(rows_.data(), std::size_t(n)), logp, V_);
    }

    void reorder(std::span<const int> src) {
      const int d = d_;
      for (std::size_t l = 0; l < h_.grit_transformer.cap_generator.layers.size(); ++l)
        for (int r = 0; r < R_; ++r) {
          const int s = src[std::size_t(r)];
          if (!was_active_[std::size_t(s)]) continue;  // finished beam: its state is never read again
          tk::copy(ctx_, as_cmat(cache(kc_, l, s), steps_, d), as_mat(cache(kc2_, l, r), steps_, d));
          tk::copy(ctx_, as_cmat(cache(vc_, l, s), steps_, d), as_mat(cache(vc2_, l, r), steps_, d));
        }
      for (int r = 0; r < R_; ++r)
        std::copy_n(padk_.data() + std::size_t(src[std::size_t(r)]) * L_, steps_, padk2_.data() + std::size_t(r) * L_);
      std::swap(kc_, kc2_);
      std::swap(vc_, vc2_);
      std::swap(padk_, padk2_);
    }

   private:
    float* cache(buf& c, std::size_t l, int r) { return c.data() + ((l * R_ + std::size_t(r)) * L_) * d_; }

    struct visual_kv {
      int ng = 0, nr = 0;
      buf k1, v1, k2, v2;
    };
    const grit_head& h_;
    context<B>& ctx_;
    int ni_, d_, V_, L_, R_;
    int steps_ = 0;
    std::vector<std::vector<visual_kv>> vis_;  // [layer][image]
    buf kc_, vc_, kc2_, vc2_;                  // [layer][row][step][d]
    std::vector<unsigned char> padk_, padk2_;  // [row][step]: input was PAD (host: the attention's key mask)
    buf x_, q_, k_, v_, att_, a_, q1_, q2_, e1_, e2_, o_, mix_, y_, cat_, al_, h_ff_, logits_;
    std::vector<int> rows_, img_begin_;
    std::vector<std::int64_t> ids_;
    std::vector<unsigned char> was_active_;
  };

  beam_params search_params() const {
    return {cfg.beam_size, cfg.beam_len, std::int64_t(cfg.bos), std::int64_t(cfg.eos), std::int64_t(cfg.pad)};
  }

  /// Captions (token ids and log-probs) for every image of the batch.
  GYOLO_COMPILED_ONCE std::vector<beam_hypothesis> generate(context<B>& ctx, const std::vector<tokens>& toks) const {
    GYOLO_CHECK(loaded_, "the model has no caption head (Grit weights were not loaded)");
    decoder dec(*this, ctx, toks);
    return beam_search(dec, int(toks.size()), cfg.vocab_size, search_params());
  }

  GYOLO_COMPILED_ONCE std::vector<beam_hypothesis> operator()(context<B>& ctx, const inputs& in) const {
    GYOLO_CHECK(loaded_, "the model has no caption head (Grit weights were not loaded)");
    check_inputs(in);
    std::vector<tokens> toks;
    for (int i = 0; i < in.x11.n; ++i) toks.push_back(encode(ctx, in, i));
    return generate(ctx, toks);
  }

 private:
  static constexpr const char* topk_hint = "a larger input, e.g. 128x128 or more on both sides, or captioning switched off";

  void check_inputs(const inputs& in) const {
    const int n = in.x11.n;
    for (auto* v : {&in.x17, &in.x20, &in.x23, &in.x11, &in.x44, &in.semantic, &in.d3[0], &in.d3[1], &in.d3[2]})
      GYOLO_CHECK(v->data && v->n == n, "caption: missing or inconsistent head inputs (run forward with keep_features = true)");
    GYOLO_CHECK(in.x17.c == cv3[0][0].d.cin && in.x20.c == cv3[1][0].d.cin && in.x23.c == cv3[2][0].d.cin &&
                    in.x11.c == cv4[0].d.cin && in.x44.c == cv5[0].d.cin,
                "caption: feature channels do not match the Grit adapters");
    const std::array<typename inputs::cv, 3> lv{in.x17, in.x20, in.x23};
    for (int l = 0; l < 3; ++l)
      GYOLO_CHECK(in.d3[l].plane() == lv[l].plane(), "caption: head map and feature sizes differ");
  }

  /// Gathers columns `at` of image i of x ([n, C, H, W]) into [1, C, 1, m], runs the conv stack and
  /// writes output column k to token row row0 + rows[k] of out ([*, d]).
  void gather_conv(context<B>& ctx, typename inputs::cv x, int i, const std::vector<std::int64_t>& at,
                   const std::array<conv_layer<B>, 2>& convs, mview out, const std::vector<int>& rows, int row0) const {
    const int m = int(at.size());
    auto g = storage<B>::alloc(ctx, {1, x.c, 1, m});
    tk::gather_columns(ctx, x, i, at, g.v());
    auto y = convs[1](ctx, convs[0](ctx, g.cv()).cv());
    tk::columns_to_rows(ctx, y.cv(), rows, row0, out);
  }

  bool loaded_ = false;
};

/// Compiled once in gyolo's library (src/caption_cpu.cpp).
extern template class grit_head<cpu>;

}  // namespace gyolo
