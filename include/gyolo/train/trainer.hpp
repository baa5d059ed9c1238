// One training iteration of upstream's caption/train.py (Training II), for a host program to drive:
//
//   for task in (vision, language):                       (train.py's loop body, AMP off)
//     warm-up: the vision optimizer's group learning rates ramp (bias group from warmup_bias_lr)
//     forward the whole model in train mode (Grit teacher-forced in both passes; BatchNorm
//       statistics update in both)
//     vision:   ComputeLossLH on `imgs` (train/vision_loss.hpp)
//     language: ComputeCaptionLoss on `ori_imgs` (caption_nll, gain 0.1)
//     backward; clip the non-Grit gradients to norm 10 and Grit's to caption_clip_max_norm
//     step that task's optimizer (vision: every non-Grit parameter; language: Grit), zero ITS
//       gradients, update the EMA
//
// As upstream, the caption pass's gradients on non-Grit parameters are never stepped or zeroed:
// they add into the next vision pass. The first iteration starts from zero gradients.
//
// The caption stage (caption/tune.py's recipe: freeze_options that leave every vision parameter
// out, `gyolo train --freeze 56`): there is no vision pass. The vision layers, which no longer
// change, are folded once into their inference form, and each iteration runs them on `ori_imgs`
// to get exactly the features that inference gives Grit, then Grit alone forward and backward
// (teacher-forced, train mode) and the caption optimizer's step. About three times as many
// caption iterations per second as the joint loop.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "gyolo/core/compiled_once.hpp"
#include "gyolo/io/gguf.hpp"
#include "gyolo/io/gguf_write.hpp"
#include "gyolo/model/train_model.hpp"
#include "gyolo/model/weights.hpp"
#include "gyolo/nn/save.hpp"
#include "gyolo/train/optim.hpp"
#include "gyolo/train/vision_loss.hpp"

namespace gyolo::train {

/// upstream's hyperparameters that one iteration uses (hyp.scratch-cap.yaml's values).
struct train_hyp {
  double lr0 = 0.004, lrf = 0.125, momentum = 0.937, weight_decay = 0.005;
  double warmup_epochs = 0.6, warmup_bias_lr = 0.01;
  double clip_vision = 10.0, clip_caption = 1.0;  // clip_grad_norm_ max norms (caption_clip_max_norm)
  double caption_loss_gain = 0.1;
  std::int64_t caption_pad = 0;
  int epochs = 60;  // for the flat-cosine schedule
  optimizer_kind optimizer_type = optimizer_kind::adamw;  // train.py --optimizer (the README's recipe: AdamW)
  double warmup_momentum = 0.8;                      // SGD only: the momentum's warm-up start
};

/// Fine-tuning options (upstream: train.py --freeze N, caption/tune.py).
struct freeze_options {
  /// Parameters whose upstream name starts with one of these are not trained (train.py --freeze N:
  /// "model.0." ... "model.<N-1>."): no optimizer state, left out of clipping and of the saved
  /// gradients, as PyTorch's requires_grad = False. Their BatchNorm statistics still update.
  std::vector<std::string> prefixes;
  /// tune.py's FrozenBatchNorm2d everywhere: every BatchNorm normalises with its running statistics,
  /// which no longer update, and its weight and bias are not trained.
  bool batchnorm = false;
  /// train.py --freeze N: the first n layers.
  static freeze_options first_layers(int n) {
    freeze_options f;
    for (int i = 0; i < n; ++i) f.prefixes.push_back("model." + std::to_string(i) + ".");
    return f;
  }
};

/// One batch as caption/train.py's loop receives it (images as float in [0, 1], i.e. uint8 / 255).
struct train_batch {
  cview<float> imgs, ori_imgs;  // [B, 3, H, W]: the augmented view (vision pass) and the plain one (caption pass)
  const float* targets = nullptr;  // [n, 6] image, class, x, y, w, h (normalised)
  int n = 0;
  const float* masks = nullptr;    // [n, H/4, W/4] per-instance masks
  const float* semasks = nullptr;  // [B, S, H/4, W/4]
  const std::int64_t* caps = nullptr;  // [B, seq_len] BOS ... EOS PAD...
  int seq_len = 0;
};

/// Where an iteration stands: the epoch, the integrated batch index and the batches per epoch
/// (the warm-up lasts max(round(warmup_epochs x nb), 100) iterations).
struct iteration {
  int epoch = 0, ni = 0, nb = 100;
};

struct step_result {
  vision_loss_items vision;
  double caption = 0;                    // ComputeCaptionLoss's l_cap * B
  std::array<double, 3> lr_vision{}, lr_caption{};  // the group learning rates used
  float grad_norm_vision = 0, grad_norm_caption = 0;  // before clipping (each pass's own parameters)
};

template <class B>
class trainer {
 public:
  /// model: the train form with its weights loaded. The EMA starts as a copy of it.
  GYOLO_COMPILED_ONCE trainer(train_model<B>& model, context<B>& ctx, const train_hyp& h = {}, const freeze_options& fz = {})
      : model_(model), ctx_(ctx), tape_(ctx), hyp_(h), freeze_(fz), ema_model_(model),
        vision_(split(model, false, fz), h.optimizer_type, h.lr0, h.momentum, h.weight_decay),
        grit_(split(model, true, fz), h.optimizer_type, h.lr0 / 2, h.momentum, h.weight_decay) {
    for (auto* ps : {&vision_.params(), &grit_.params()})
      for (const auto& r : *ps) r.p->g();  // optimizer.zero_grad() at the start: zero buffers
    for (auto* ps : {&vision_.params(), &grit_.params()})
      for (const auto& r : *ps) r.p->has_grad = false;  // ... and no gradient yet (.grad None)
    if (vision_.params().empty()) {
      GYOLO_CHECK(!grit_.params().empty(), "trainer: every parameter is frozen, there is nothing to train");
      frozen_vision_.emplace(nn::fold<vision_graph<B>>(model.vision, false));
    }
  }

  /// true when every vision parameter is frozen: the caption stage (see the top of this file).
  bool caption_only() const { return frozen_vision_.has_value(); }

  /// Called right before each optimizer step, after clipping (task "vision" or "language"): the
  /// parameters with their gradients, for tests and logging.
  std::function<void(const char* task, const std::vector<param_ref>& all)> before_step;

  GYOLO_COMPILED_ONCE step_result step(const train_batch& b, const iteration& it) {
    const auto in_use = ctx_.enter("trainer::step");
    step_result r;
    const int nw = std::max(int(std::lround(hyp_.warmup_epochs * it.nb)), 100);
    const double f = one_flat_cycle(1.0, hyp_.lrf, hyp_.epochs, it.epoch), f2 = one_flat_cycle(1.0, hyp_.lrf * 2.0, hyp_.epochs, it.epoch);
    for (int j = 0; j < 3; ++j) {
      vision_.groups().lr[std::size_t(j)] =
          it.ni <= nw ? warmup_lr(it.ni, nw, j == 0 ? hyp_.warmup_bias_lr : 0.0, hyp_.lr0 * f) : hyp_.lr0 * f;
      grit_.groups().lr[std::size_t(j)] = hyp_.lr0 / 2 * f2;
      // SGD: the momentum warms up too (upstream: groups with a 'momentum' key; AdamW's have none)
      if (it.ni <= nw) vision_.set_momentum(j, warmup_lr(it.ni, nw, hyp_.warmup_momentum, hyp_.momentum));
    }
    r.lr_vision = vision_.groups().lr;
    r.lr_caption = grit_.groups().lr;
    if (frozen_vision_) {
      caption_stage_pass(b, r);
      return r;
    }
    // vision pass
    {
      auto o = forward(b.imgs, b);
      const auto& h = o.vision.head;
      vision_loss_outputs out;
      vision_loss_grads gr;
      for (int k = 0; k < 3; ++k)
        for (int l = 0; l < 3; ++l) {
          out.d[std::size_t(k)][std::size_t(l)] = h.d[std::size_t(k)][std::size_t(l)].t.val();
          gr.d[std::size_t(k)][std::size_t(l)] = h.d[std::size_t(k)][std::size_t(l)].t.grad();
        }
      for (int k = 0; k < 2; ++k) {
        out.mc[std::size_t(k)] = h.mc[std::size_t(k)].t.val();
        out.p[std::size_t(k)] = h.p[std::size_t(k)].t.val();
        out.s[std::size_t(k)] = h.s[std::size_t(k)].t.val();
        gr.mc[std::size_t(k)] = h.mc[std::size_t(k)].t.grad();
        gr.p[std::size_t(k)] = h.p[std::size_t(k)].t.grad();
        gr.s[std::size_t(k)] = h.s[std::size_t(k)].t.grad();
      }
      r.vision = vision_loss(vision_loss_config{}, out, vision_targets{b.targets, b.n, b.masks, b.semasks}, gr);
      GYOLO_CHECK(std::isfinite(r.vision.total), "train step: the vision loss is not finite");
      tape_.backward();
      r.grad_norm_vision = finish_pass("vision", vision_);
    }
    // caption pass
    {
      auto o = forward(b.ori_imgs, b);
      r.caption = caption_nll(o.logp.t, b.caps, hyp_.caption_pad, hyp_.caption_loss_gain);
      GYOLO_CHECK(std::isfinite(r.caption), "train step: the caption loss is not finite (every caption target is PAD?)");
      tape_.backward();
      r.grad_norm_caption = finish_pass("language", grit_);
    }
    return r;
  }

  /// Adds the training state to a weights file being written (after the model's own tensors,
  /// nn::save_tensors(w, model, "model")): the EMA as "ema.model.*", each optimizer's moments and
  /// step count as "optim.<vision|caption>.<exp_avg|exp_avg_sq|step>.<name>" (parameters that were
  /// never stepped have none), the gradients held between iterations as "grad.<name>" (the caption
  /// pass's trunk gradients, which the next vision pass adds to; every parameter that has a
  /// gradient buffer is listed, so that which ones the optimizers step is restored too), and the
  /// EMA's update count as metadata "gyolo.ema_updates". Resuming from it continues the run
  /// exactly. (Upstream's checkpoints hold no gradients: its resumed runs lose that carry-over.)
  GYOLO_COMPILED_ONCE void save_state(gguf::writer& w) {
    nn::save_tensors(w, ema_model_, "ema.model");
    w.set_u64("gyolo.ema_updates", std::uint64_t(ema_.updates));
    for (auto* ps : {&vision_.params(), &grit_.params()})
      for (const auto& r : *ps)
        if (r.p->has_grad) w.add_tensor("grad." + r.name, std::vector<std::int64_t>(r.p->shape.begin(), r.p->shape.end()), r.p->grad);
    auto opt = [&](optimizer& oo, const std::string& tag) {
      for (std::size_t i = 0; i < oo.params().size(); ++i) {
        const auto& r = oo.params()[i];
        const std::vector<std::int64_t> shape(r.p->shape.begin(), r.p->shape.end());
        if (auto* s = oo.as_sgd()) {
          if (!s->buffer_of(i).empty()) w.add_tensor("optim." + tag + ".momentum_buffer." + r.name, shape, s->buffer_of(i));
          continue;
        }
        const auto& st = oo.as_adamw()->state_of(i);
        if (st.step == 0) continue;
        w.add_tensor("optim." + tag + ".exp_avg." + r.name, shape, st.m);
        w.add_tensor("optim." + tag + ".exp_avg_sq." + r.name, shape, st.v);
        w.add_tensor("optim." + tag + ".step." + r.name, {1}, std::vector<float>{float(st.step)});
      }
    };
    opt(vision_, "vision");
    opt(grit_, "caption");
  }
  /// Restores what save_state wrote (the model itself is loaded by the caller, from the same file).
  /// A file without training state (a converted checkpoint) is an error naming what is missing.
  GYOLO_COMPILED_ONCE void restore_state(const gguf::file& f) {
    if (!f.has("gyolo.ema_updates") || !f.find("ema.model.1.conv.weight"))
      f.fail("holds no training state (EMA and optimizer moments): it was not written by trainer::save_state");
    gguf_weights ws(f);
    nn::load_tensors(ema_model_, ws, "ema.model");
    ema_.updates = std::int64_t(f.get_uint("gyolo.ema_updates"));
    auto opt = [&](optimizer& oo, const std::string& tag) {
      for (std::size_t i = 0; i < oo.params().size(); ++i) {
        const auto& r = oo.params()[i];
        if (auto* s = oo.as_sgd()) {
          const std::string n = "optim." + tag + ".momentum_buffer." + r.name;
          s->buffer_of(i) = f.find(n) ? ws.get(n, r.p->shape) : std::vector<float>{};
          continue;
        }
        auto& st = oo.as_adamw()->state_of(i);
        const std::string n = "optim." + tag + ".exp_avg." + r.name;
        if (!f.find(n)) {
          st = {};
          continue;
        }
        st.m = ws.get(n, r.p->shape);
        st.v = ws.get("optim." + tag + ".exp_avg_sq." + r.name, r.p->shape);
        const float step = ws.get("optim." + tag + ".step." + r.name, {1})[0];
        if (!(step >= 1 && step < 16777216.0f && step == std::floor(step)))
          f.fail("optim." + tag + ".step." + r.name + " is " + std::to_string(step) + ", expected a positive whole number");
        st.step = std::int64_t(step);
      }
    };
    opt(vision_, "vision");
    opt(grit_, "caption");
    for (auto* ps : {&vision_.params(), &grit_.params()})
      for (const auto& r : *ps) {
        const std::string n = "grad." + r.name;
        r.p->g();
        if (f.find(n)) {
          r.p->grad = ws.get(n, r.p->shape);
        } else {
          std::fill(r.p->grad.begin(), r.p->grad.end(), 0.0f);
          r.p->has_grad = false;
        }
      }
  }

  train_model<B>& ema() { return ema_model_; }
  optimizer& vision_optimizer() { return vision_; }
  optimizer& caption_optimizer() { return grit_; }
  model_ema& ema_state() { return ema_; }

 private:
  /// The trained non-Grit (grit = false) or Grit parameters of the model.
  static std::vector<param_ref> split(train_model<B>& m, bool grit, const freeze_options& fz) {
    auto all = collect_params(m, "model");
    std::vector<param_ref> r;
    for (auto& p : all) {
      if ((p.name.rfind("model.56.", 0) == 0) != grit) continue;
      bool frozen = fz.batchnorm && p.name.find(".bn.") != std::string::npos;
      for (const auto& f : fz.prefixes) frozen = frozen || p.name.rfind(f, 0) == 0;
      if (!frozen) r.push_back(p);
    }
    return r;
  }
  /// The caption stage's iteration: the folded vision model's features of ori_imgs (no gradient
  /// flows into them), Grit teacher-forced on a fresh tape, backward through Grit only.
  void caption_stage_pass(const train_batch& b, step_result& r) {
    auto vo = frozen_vision_->forward(ctx_, b.ori_imgs, false, true);
    tape_.reset();
    tape_.training = true;
    tape_.frozen_bn = freeze_.batchnorm;
    auto x17 = tape_.input(vo.x17.cv(), true), x20 = tape_.input(vo.x20.cv(), true), x23 = tape_.input(vo.x23.cv(), true);
    auto x11 = tape_.input(vo.x11.cv(), true), x44 = tape_.input(vo.x44.cv(), true);
    grit_train_inputs in;
    in.x17 = x17.t;
    in.x20 = x20.t;
    in.x23 = x23.t;
    in.x11 = x11.t;
    in.x44 = x44.t;
    for (std::size_t l = 0; l < 3; ++l) in.d3[l] = vo.d3[l].cv();
    in.semantic = vo.semantic.cv();
    in.caps = b.caps;
    in.seq_len = b.seq_len;
    auto logp = model_.grit.forward(tape_, in);
    r.caption = caption_nll(logp.t, b.caps, hyp_.caption_pad, hyp_.caption_loss_gain);
    GYOLO_CHECK(std::isfinite(r.caption), "train step: the caption loss is not finite (every caption target is PAD?)");
    tape_.backward();
    r.grad_norm_caption = finish_pass("language", grit_);
  }
  train_model_outputs<B> forward(cview<float> x, const train_batch& b) {
    tape_.reset();
    tape_.training = true;
    tape_.frozen_bn = freeze_.batchnorm;  // FrozenBatchNorm2d: running statistics, not updated
    auto in = tape_.input(x, false);
    return model_.forward(tape_, in.t, b.caps, b.seq_len);
  }
  /// Clip both parameter sets (as train.py does in both passes), step `opt`, zero its gradients,
  /// update the EMA. Returns the norm of opt's own gradients before clipping.
  float finish_pass(const char* task, optimizer& opt) {
    const float nv = clip_grad_norm(vision_.params(), hyp_.clip_vision);
    const float nc = clip_grad_norm(grit_.params(), hyp_.clip_caption);
    if (before_step) {
      std::vector<param_ref> all = vision_.params();
      all.insert(all.end(), grit_.params().begin(), grit_.params().end());
      before_step(task, all);
    }
    opt.step();
    for (const auto& p : opt.params())
      if (p.p->has_grad) std::fill(p.p->grad.begin(), p.p->grad.end(), 0.0f);
    ema_.update(ema_model_, model_);
    return &opt == &vision_ ? nv : nc;
  }

  train_model<B>& model_;
  context<B>& ctx_;
  tape<B> tape_;
  train_hyp hyp_;
  freeze_options freeze_;
  train_model<B> ema_model_;
  model_ema ema_;
  optimizer vision_, grit_;
  std::optional<vision_graph<B>> frozen_vision_;  // the caption stage's folded vision layers
};

/// Compiled once in gyolo's library (src/train_cpu.cpp).
extern template class trainer<cpu>;

}  // namespace gyolo::train
