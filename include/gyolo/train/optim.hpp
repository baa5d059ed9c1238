// Optimizers, learning-rate schedule, gradient clipping and EMA of upstream's caption/train.py
// (Training II), each equal to the PyTorch 1.13 code it mirrors:
//   param_groups     custom_optimizer's grouping: biases (no decay), BatchNorm/LayerNorm weights (no
//                    decay), other weights (decay); the groups come from the modules' descriptions
//                    (fields(): names; param::norm_weight: set by the norm modules' init)
//   adamw            torch.optim.AdamW, single-tensor path (CPU default), betas/eps/decay per group
//   sgd              torch.optim.SGD with momentum, Nesterov, weight decay per group
//   clip_grad_norm   torch.nn.utils.clip_grad_norm_ (2-norm of the per-tensor 2-norms)
//   one_flat_cycle   utils/general.py's flat-then-cosine factor; warmup_lr: train.py's np.interp ramp
//   model_ema        utils/torch_utils.py ModelEMA (decay 0.9999 (1 - exp(-updates / 2000))) over every
//                    parameter and buffer
// Parameters that never received a gradient (param::has_grad false, PyTorch's `.grad is None`) are
// not stepped, as torch.optim does: Grit's fc_alpha2 is one.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "gyolo/core/error.hpp"
#include "gyolo/nn/module.hpp"

namespace gyolo::train {

/// upstream's parameter groups, in its optimizers' order (group 0 is the one whose learning rate
/// warms up from warmup_bias_lr).
enum class param_group : int { bias = 0, norm_weight = 1, weight = 2 };

struct param_ref {
  std::string name;
  param* p = nullptr;
  param_group group = param_group::weight;
};

/// Every parameter of module m under `prefix`, with its group (a name ending in "bias" is a bias,
/// as upstream's `hasattr(v, 'bias')`; a norm weight is declared by its module).
template <class M>
std::vector<param_ref> collect_params(M& m, const std::string& prefix) {
  std::vector<param_ref> r;
  nn::for_each_param(m, prefix, [&](const std::string& n, param& p) {
    const bool bias = n.size() >= 4 && n.compare(n.size() - 4, 4, "bias") == 0;
    r.push_back({n, &p, bias ? param_group::bias : p.norm_weight ? param_group::norm_weight : param_group::weight});
  });
  return r;
}

/// Per-group settings (index: param_group).
struct group_settings {
  std::array<double, 3> lr{0.004, 0.004, 0.004};
  std::array<double, 3> weight_decay{0.0, 0.0, 0.005};
};

struct adamw_options {
  double lr = 0.004;
  double beta1 = 0.937, beta2 = 0.999;
  double eps = 1e-4;
  double weight_decay = 0.005;  // on the weight group only
};

/// torch.optim.AdamW (torch 1.13, foreach off): per parameter with a gradient,
///   p *= 1 - lr wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
///   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
class adamw {
 public:
  adamw(std::vector<param_ref> params, const adamw_options& o) : params_(std::move(params)), o_(o) {
    groups.lr = {o.lr, o.lr, o.lr};
    groups.weight_decay = {0.0, 0.0, o.weight_decay};
    state_.resize(params_.size());
  }
  group_settings groups;  // learning rates (set by the schedule) and decays
  const std::vector<param_ref>& params() const { return params_; }

  void step() {
    const float b1 = float(o_.beta1), b2 = float(o_.beta2), omb1 = float(1.0 - o_.beta1), omb2 = float(1.0 - o_.beta2);
    for (std::size_t i = 0; i < params_.size(); ++i) {
      param& p = *params_[i].p;
      if (!p.has_grad) continue;
      auto& s = state_[i];
      if (s.m.empty()) {
        s.m.assign(p.value.size(), 0.0f);
        s.v.assign(p.value.size(), 0.0f);
      }
      const int gi = int(params_[i].group);
      const double lr = groups.lr[std::size_t(gi)], wd = groups.weight_decay[std::size_t(gi)];
      s.step += 1;
      const float decay = float(1.0 - lr * wd);
      const double bc1 = 1.0 - std::pow(o_.beta1, double(s.step)), bc2 = 1.0 - std::pow(o_.beta2, double(s.step));
      const float step_size = float(lr / bc1), bc2_sqrt = float(std::sqrt(bc2)), eps = float(o_.eps);
      float* w = p.value.data();
      const float* g = p.grad.data();
      for (std::size_t k = 0; k < p.value.size(); ++k) {
        w[k] *= decay;
        // torch's operation order: add_(g, alpha), addcmul_ (value * g * g), addcdiv_ (value * m / denom)
        s.m[k] = s.m[k] * b1 + omb1 * g[k];
        s.v[k] = s.v[k] * b2 + omb2 * g[k] * g[k];
        const float denom = std::sqrt(s.v[k]) / bc2_sqrt + eps;
        w[k] = w[k] + -step_size * s.m[k] / denom;
      }
    }
  }
  /// The optimizer state of parameter i (exp_avg, exp_avg_sq, step), for saving and tests.
  struct state {
    std::vector<float> m, v;
    std::int64_t step = 0;
  };
  const state& state_of(std::size_t i) const { return state_.at(i); }
  state& state_of(std::size_t i) { return state_.at(i); }

 private:
  std::vector<param_ref> params_;
  adamw_options o_;
  std::vector<state> state_;
};

struct sgd_options {
  double lr = 0.01;
  double momentum = 0.937;
  bool nesterov = true;
  double weight_decay = 0.0005;  // on the weight group only
};

/// torch.optim.SGD (torch 1.13, foreach off): g += wd p; buf = g on the first step, else
/// momentum buf + g; with Nesterov g += momentum buf, else g = buf; p -= lr g.
class sgd {
 public:
  sgd(std::vector<param_ref> params, const sgd_options& o) : params_(std::move(params)), o_(o) {
    groups.lr = {o.lr, o.lr, o.lr};
    groups.weight_decay = {0.0, 0.0, o.weight_decay};
    buf_.resize(params_.size());
  }
  group_settings groups;
  std::array<double, 3> momentum{0.937, 0.937, 0.937};  // per group (upstream warms it up for SGD)
  const std::vector<param_ref>& params() const { return params_; }
  /// The momentum buffer of parameter i (empty before its first step).
  std::vector<float>& buffer_of(std::size_t i) { return buf_.at(i); }
  void step() {
    for (std::size_t i = 0; i < params_.size(); ++i) {
      param& p = *params_[i].p;
      if (!p.has_grad) continue;
      const int gi = int(params_[i].group);
      const float lr = float(groups.lr[std::size_t(gi)]), wd = float(groups.weight_decay[std::size_t(gi)]);
      const float mom = float(momentum[std::size_t(gi)]);
      auto& b = buf_[i];
      const bool first = b.empty();
      if (first) b.resize(p.value.size());
      for (std::size_t k = 0; k < p.value.size(); ++k) {
        float d = p.grad[k];
        if (wd != 0.0f) d = d + wd * p.value[k];
        b[k] = first ? d : b[k] * mom + d;
        d = o_.nesterov ? d + mom * b[k] : b[k];
        p.value[k] += -lr * d;
      }
    }
  }

 private:
  std::vector<param_ref> params_;
  sgd_options o_;
  std::vector<std::vector<float>> buf_;
};

enum class optimizer_kind { adamw, sgd };

/// One of upstream's optimizers over a parameter set, chosen at run time (train.py --optimizer
/// AdamW | SGD): AdamW(betas (momentum, 0.999), eps 1e-4) or SGD(momentum, Nesterov), with the
/// same three groups.
class optimizer {
 public:
  optimizer(std::vector<param_ref> params, optimizer_kind kind, double lr, double momentum, double weight_decay)
      : o_(kind == optimizer_kind::adamw ? std::variant<adamw, sgd>(std::in_place_type<adamw>, std::move(params),
                                                                      adamw_options{lr, momentum, 0.999, 1e-4, weight_decay})
                                         : std::variant<adamw, sgd>(std::in_place_type<sgd>, std::move(params),
                                                                    sgd_options{lr, momentum, true, weight_decay})) {}
  optimizer_kind kind() const { return std::holds_alternative<adamw>(o_) ? optimizer_kind::adamw : optimizer_kind::sgd; }
  group_settings& groups() { return std::visit([](auto& o) -> group_settings& { return o.groups; }, o_); }
  const std::vector<param_ref>& params() const { return std::visit([](const auto& o) -> const std::vector<param_ref>& { return o.params(); }, o_); }
  /// SGD's momentum per group (the warm-up ramps it); AdamW has none (upstream's groups carry no 'momentum').
  void set_momentum(int group, double m) {
    if (auto* s = std::get_if<sgd>(&o_)) s->momentum[std::size_t(group)] = m;
  }
  void step() {
    std::visit([](auto& o) { o.step(); }, o_);
  }
  adamw* as_adamw() { return std::get_if<adamw>(&o_); }
  sgd* as_sgd() { return std::get_if<sgd>(&o_); }

 private:
  std::variant<adamw, sgd> o_;
};

/// torch.nn.utils.clip_grad_norm_(params, max_norm): scales every gradient by
/// min(1, max_norm / (total + 1e-6)), total = the 2-norm of the per-tensor 2-norms. Returns total.
/// A non-finite total is an error (PyTorch 1.13 would scale every gradient to NaN silently).
inline float clip_grad_norm(const std::vector<param_ref>& params, double max_norm) {
  std::vector<float> norms;
  for (const auto& r : params) {
    if (!r.p->has_grad) continue;
    double s = 0;
    for (float g : r.p->grad) s += double(g) * double(g);
    norms.push_back(float(std::sqrt(s)));
  }
  double s = 0;
  for (float n : norms) s += double(n) * double(n);
  const float total = float(std::sqrt(s));
  GYOLO_CHECK(std::isfinite(total), "clip_grad_norm: the gradient norm is not finite (a NaN or Inf loss or gradient)");
  const float coef = std::min(float(max_norm) / (total + 1e-6f), 1.0f);
  for (const auto& r : params)
    if (r.p->has_grad)
      for (float& g : r.p->grad) g *= coef;
  return total;
}

/// utils/general.py one_flat_cycle(y1, y2, steps)(x): y1 until steps // 2, then a half cosine to y2.
inline double one_flat_cycle(double y1, double y2, int steps, double x) {
  const int h = steps / 2;
  if (!(x > h)) return y1;
  constexpr double pi = 3.14159265358979323846;
  return ((1.0 - std::cos((x - h) * pi / h)) / 2.0) * (y2 - y1) + y1;
}

/// train.py's warm-up: np.interp(ni, [0, nw], [start, target]) (clamped outside).
inline double warmup_lr(double ni, double nw, double start, double target) {
  if (ni <= 0) return start;
  if (ni >= nw) return target;
  return start + (target - start) * (ni / nw);
}

/// ModelEMA: ema = d ema + (1 - d) model for every parameter and buffer, d = decay (1 - exp(-u / tau))
/// after u updates.
class model_ema {
 public:
  explicit model_ema(double decay = 0.9999, double tau = 2000, std::int64_t updates = 0) : decay_(decay), tau_(tau), updates(updates) {}
  std::int64_t updates;
  double decay_at(std::int64_t u) const { return decay_ * (1.0 - std::exp(-double(u) / tau_)); }
  /// ema and model: the same module type (shadow copy and live model). Walks both in lockstep by name.
  template <class M>
  void update(M& ema, M& model) {
    ++updates;
    const double d = decay_at(updates);
    const float fd = float(d), om = float(1.0 - d);
    std::vector<std::vector<float>*> dst, src;
    nn::walk(ema, "", collector{dst});
    nn::walk(model, "", collector{src});
    GYOLO_CHECK(dst.size() == src.size(), "model_ema: the EMA and the model differ in structure");
    for (std::size_t i = 0; i < dst.size(); ++i) {
      GYOLO_CHECK(dst[i]->size() == src[i]->size(), "model_ema: the EMA and the model differ in tensor sizes");
      float* e = dst[i]->data();
      const float* m = src[i]->data();
      for (std::size_t k = 0; k < dst[i]->size(); ++k) {
        e[k] *= fd;
        e[k] += om * m[k];
      }
    }
  }

 private:
  struct collector {
    std::vector<std::vector<float>*>& out;
    void param(const std::string&, gyolo::param& p) { out.push_back(&p.value); }
    void buffer(const std::string&, gyolo::buffer& b) { out.push_back(&b.value); }
  };
  double decay_, tau_;
};

}  // namespace gyolo::train
