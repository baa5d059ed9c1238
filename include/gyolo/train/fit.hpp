// Training runs (`gyolo train`): epochs over a dataset (gyolo/data/loader.hpp), upstream's
// caption/train.py iteration per batch (train/trainer.hpp), validation of the EMA after each epoch
// (train/evaluate.hpp), checkpoints written atomically (`last.gguf`: model, training state and
// where the run stands, for --resume; `best.gguf`: the EMA weights of the best epoch, for
// inference), a stop flag (Ctrl-C) that saves and returns, and resuming that continues exactly
// where a run stopped: the data order and augmentation of every sample are a function of (seed,
// epoch, position), so a resumed run sees the same batches as an uninterrupted one.
#pragma once
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gyolo/core/compiled_once.hpp"
#include "gyolo/data/loader.hpp"
#include "gyolo/train/checkpoint.hpp"
#include "gyolo/train/evaluate.hpp"
#include "gyolo/train/init.hpp"
#include "gyolo/train/trainer.hpp"

namespace gyolo::train {

/// What a run is (saved in last.gguf as gyolo.train.run, so that --resume continues it as it was).
struct run_options {
  std::string data;                 // the data yaml
  int epochs = 100;
  int batch = 16;
  int imgsz = 640;
  int close_mosaic = 10;            // the last epochs without mosaic (train.py --close-mosaic)
  std::uint64_t seed = 0;           // weights init, data order, augmentation
  int val_every = 1;                // validate every n epochs (and after the last)
  int val_max_images = 0;           // 0: the whole val split
  bool strict = false;              // a bad file stops the run instead of being skipped
  bool augment = true;              // upstream's augmentations (hyp below); false: letterbox only
  int freeze = 0;                   // layers 0..freeze-1 not trained (train.py --freeze); 56: the caption stage
  train_hyp hyp;
  data::aug_hyp aug;

  nlohmann::json to_json() const {
    return {{"data", data},
            {"epochs", epochs},
            {"batch", batch},
            {"imgsz", imgsz},
            {"close_mosaic", close_mosaic},
            {"seed", seed},
            {"val_every", val_every},
            {"val_max_images", val_max_images},
            {"strict", strict},
            {"augment", augment},
            {"freeze", freeze},
            {"hyp",
             {{"lr0", hyp.lr0},
              {"lrf", hyp.lrf},
              {"momentum", hyp.momentum},
              {"weight_decay", hyp.weight_decay},
              {"warmup_epochs", hyp.warmup_epochs},
              {"warmup_bias_lr", hyp.warmup_bias_lr},
              {"warmup_momentum", hyp.warmup_momentum},
              {"clip_vision", hyp.clip_vision},
              {"clip_caption", hyp.clip_caption},
              {"caption_loss_gain", hyp.caption_loss_gain},
              {"optimizer", hyp.optimizer_type == optimizer_kind::sgd ? "SGD" : "AdamW"},
              {"hsv_h", aug.hsv_h},
              {"hsv_s", aug.hsv_s},
              {"hsv_v", aug.hsv_v},
              {"degrees", aug.degrees},
              {"translate", aug.translate},
              {"scale", aug.scale},
              {"shear", aug.shear},
              {"perspective", aug.perspective},
              {"flipud", aug.flipud},
              {"fliplr", aug.fliplr},
              {"mosaic", aug.mosaic},
              {"mixup", aug.mixup}}}};
  }
  static run_options from_json(const nlohmann::json& j) {
    run_options o;
    o.data = j.at("data").get<std::string>();
    o.epochs = j.at("epochs").get<int>();
    o.batch = j.at("batch").get<int>();
    o.imgsz = j.at("imgsz").get<int>();
    o.close_mosaic = j.at("close_mosaic").get<int>();
    o.seed = j.at("seed").get<std::uint64_t>();
    o.val_every = j.at("val_every").get<int>();
    o.val_max_images = j.at("val_max_images").get<int>();
    o.strict = j.at("strict").get<bool>();
    o.augment = j.at("augment").get<bool>();
    o.freeze = j.value("freeze", 0);  // absent from the files of earlier versions
    const auto& h = j.at("hyp");
    auto d = [&](const char* k, double& v) { v = h.at(k).get<double>(); };
    d("lr0", o.hyp.lr0), d("lrf", o.hyp.lrf), d("momentum", o.hyp.momentum), d("weight_decay", o.hyp.weight_decay);
    d("warmup_epochs", o.hyp.warmup_epochs), d("warmup_bias_lr", o.hyp.warmup_bias_lr), d("warmup_momentum", o.hyp.warmup_momentum);
    d("clip_vision", o.hyp.clip_vision), d("clip_caption", o.hyp.clip_caption), d("caption_loss_gain", o.hyp.caption_loss_gain);
    o.hyp.optimizer_type = h.at("optimizer").get<std::string>() == "SGD" ? optimizer_kind::sgd : optimizer_kind::adamw;
    d("hsv_h", o.aug.hsv_h), d("hsv_s", o.aug.hsv_s), d("hsv_v", o.aug.hsv_v), d("degrees", o.aug.degrees);
    d("translate", o.aug.translate), d("scale", o.aug.scale), d("shear", o.aug.shear), d("perspective", o.aug.perspective);
    d("flipud", o.aug.flipud), d("fliplr", o.aug.fliplr), d("mosaic", o.aug.mosaic), d("mixup", o.aug.mixup);
    return o;
  }
};

/// Where a run stands: the next batch to train (epoch, batch index) and the best validation so far.
struct run_state {
  int epoch = 0, batch = 0;
  double best_fitness = -1;
  int best_epoch = -1;
  nlohmann::json to_json() const {
    return {{"epoch", epoch}, {"batch", batch}, {"best_fitness", best_fitness}, {"best_epoch", best_epoch}};
  }
  static run_state from_json(const nlohmann::json& j) {
    run_state s;
    s.epoch = j.at("epoch").get<int>();
    s.batch = j.at("batch").get<int>();
    s.best_fitness = j.at("best_fitness").get<double>();
    s.best_epoch = j.at("best_epoch").get<int>();
    return s;
  }
};

/// Running means of the loss components over an epoch (upstream's mloss).
struct loss_means {
  std::array<double, 7> sum{};  // box, seg, cls, dfl, fcl, dic, cap
  int n = 0;
  void add(const step_result& r, int batch) {
    for (int i = 0; i < 6; ++i) sum[std::size_t(i)] += r.vision.items[std::size_t(i)];
    sum[6] += r.caption / std::max(batch, 1);
    ++n;
  }
  double mean(int i) const { return n ? sum[std::size_t(i)] / n : 0.0; }
  static constexpr const char* names[7] = {"box", "seg", "cls", "dfl", "fcl", "dic", "cap"};
  nlohmann::json to_json() const {
    nlohmann::json j = nlohmann::json::object();
    for (int i = 0; i < 7; ++i) j[names[i]] = mean(i);
    return j;
  }
};

/// One training batch's progress, for a progress bar.
struct batch_progress {
  int epoch = 0, epochs = 0, batch = 0, batches = 0;
  double images_per_s = 0, eta_s = 0;
  const loss_means* losses = nullptr;
};

/// Everything one epoch gives: train losses and speed, validation metrics, where checkpoints went.
struct epoch_report {
  int epoch = 0, epochs = 0;
  double train_s = 0, val_s = 0, images_per_s = 0;
  loss_means losses;
  std::array<double, 3> lr{};
  std::optional<eval_metrics> val;
  double fitness = -1;
  bool best = false;
  std::string last, best_path;
  nlohmann::json to_json() const {
    nlohmann::json j;
    j["epoch"] = epoch + 1;
    j["epochs"] = epochs;
    j["train_s"] = train_s;
    j["val_s"] = val_s;
    j["images_per_s"] = images_per_s;
    j["loss"] = losses.to_json();
    j["lr"] = lr;
    if (val) j["val"] = val->to_json();
    j["fitness"] = fitness;
    j["best"] = best;
    j["last"] = last;
    if (!best_path.empty()) j["best_weights"] = best_path;
    return j;
  }
};

struct fit_callbacks {
  std::function<void(const batch_progress&)> on_batch;
  std::function<void(const epoch_report&)> on_epoch;
  std::function<void(const std::string&)> warn;  // skipped files, ...
};

/// How a run ended.
enum class fit_end { finished, stopped };

/// Upstream's fitness (utils/metrics.py fitness: 0.1 mAP50 + 0.9 mAP50-95 of the boxes). In the
/// caption stage, where the boxes cannot change, the caption's BLEU-4.
inline double fitness(const eval_metrics& m, bool caption_only = false) {
  return caption_only ? m.caption.bleu[3] : 0.1 * m.box_map50() + 0.9 * m.box_map();
}

template <class B>
class fitter {
 public:
  /// A new run: `model` freshly initialised (init_weights) or loaded (fine-tuning).
  GYOLO_COMPILED_ONCE fitter(train_model<B>& model, const model_info& info, const run_options& o, std::filesystem::path out_dir, int threads, int workers,
         fit_callbacks cb = {})
      : model_(model), info_(info), o_(o), out_(std::move(out_dir)), ctx_(threads), workers_(workers), cb_(std::move(cb)),
        cfg_(data::read_data_yaml(o.data)), tok_(info.vocab) {
    GYOLO_CHECK(o.epochs >= 1 && o.batch >= 1 && o.imgsz >= 32 && o.imgsz % 32 == 0,
                "train: epochs and batch must be >= 1 and imgsz a multiple of 32");
    GYOLO_CHECK(cfg_.nc == info.variant.nc, "train: the data has nc = " + std::to_string(cfg_.nc) + ", the model " +
                                                std::to_string(info.variant.nc));
    GYOLO_CHECK(cfg_.nc + int(cfg_.stuff_names.size()) == info.variant.nc + info.variant.sem_nc,
                "train: the data has " + std::to_string(cfg_.nc + int(cfg_.stuff_names.size())) + " semantic channels, the model " +
                    std::to_string(info.variant.nc + info.variant.sem_nc));
    o_.hyp.epochs = o.epochs;
    GYOLO_CHECK(o.freeze >= 0 && o.freeze <= 56, "train: freeze must be in [0, 56] (56: every vision layer), got " + std::to_string(o.freeze));
    trainer_.emplace(model_, ctx_, o_.hyp, freeze_options::first_layers(o.freeze));
    train_loader_.emplace(cfg_, cfg_.train, loader_options(true));
    val_loader_.emplace(cfg_, cfg_.val, loader_options(false));
  }

  /// Continues from last.gguf: the caller loaded the model's tensors from it; this restores the
  /// EMA, optimizer moments, carried gradients and where the run stood.
  GYOLO_COMPILED_ONCE void resume(const gguf::file& f) {
    trainer_->restore_state(f);
    if (!f.has("gyolo.train.state")) f.fail("holds no gyolo.train.state: not a last.gguf written by gyolo train");
    try {
      state_ = run_state::from_json(nlohmann::json::parse(f.get_string("gyolo.train.state")));
    } catch (const nlohmann::json::exception& e) {
      f.fail(std::string("gyolo.train.state is malformed: ") + e.what());
    }
    resumed_epoch_ = state_.epoch;
    resumed_batch_ = state_.batch;
  }

  const run_state& state() const { return state_; }
  trainer<B>& trainer_ref() { return *trainer_; }

  /// Runs until the last epoch or until *stop becomes true (checked between batches; the state
  /// is then saved to last.gguf so that --resume continues from the next batch).
  GYOLO_COMPILED_ONCE fit_end run(const std::atomic<bool>* stop = nullptr) {
    using clock = std::chrono::steady_clock;
    std::filesystem::create_directories(out_);
    const int nb = train_loader_->batches_per_epoch();
    GYOLO_CHECK(nb > 0, "train: the train split has no usable images");
    for (; state_.epoch < o_.epochs; ++state_.epoch, state_.batch = 0) {
      const int epoch = state_.epoch;
      const bool mosaic = o_.augment && o_.aug.mosaic > 0 && epoch < o_.epochs - o_.close_mosaic;
      train_loader_->start_epoch(epoch, mosaic, state_.batch);
      epoch_report rep;
      rep.epoch = epoch;
      rep.epochs = o_.epochs;
      const auto t0 = clock::now();
      int images = 0;
      for (; state_.batch < nb; ++state_.batch) {
        if (stop && stop->load()) {
          save_last();
          return fit_end::stopped;
        }
        auto b = train_loader_->next();
        GYOLO_CHECK(b.has_value(), "train: the loader ended the epoch early");
        iteration it;
        it.epoch = epoch;
        it.nb = nb;
        it.ni = state_.batch + nb * epoch;
        const auto r = trainer_->step(data::as_train_batch(*b), it);
        images += b->B;
        rep.losses.add(r, b->B);
        rep.lr = r.lr_vision;
        if (cb_.on_batch) {
          const double s = std::chrono::duration<double>(clock::now() - t0).count();
          batch_progress p;
          p.epoch = epoch;
          p.epochs = o_.epochs;
          p.batch = state_.batch + 1;
          p.batches = nb;
          p.images_per_s = s > 0 ? images / s : 0;
          p.eta_s = (state_.batch + 1 > 0 && s > 0) ? s / (state_.batch + 1 - first_batch_of(epoch)) * (nb - state_.batch - 1) : 0;
          p.losses = &rep.losses;
          cb_.on_batch(p);
        }
      }
      const auto t1 = clock::now();
      rep.train_s = std::chrono::duration<double>(t1 - t0).count();
      rep.images_per_s = rep.train_s > 0 ? images / rep.train_s : 0;
      const bool last_epoch = epoch + 1 == o_.epochs;
      if ((o_.val_every > 0 && (epoch + 1) % o_.val_every == 0) || last_epoch) {
        rep.val = validate();
        rep.fitness = fitness(*rep.val, trainer_->caption_only());
      }
      rep.val_s = std::chrono::duration<double>(clock::now() - t1).count();
      // checkpoints: best first (its epoch is recorded in last's state)
      if (rep.val && rep.fitness > state_.best_fitness) {
        state_.best_fitness = rep.fitness;
        state_.best_epoch = epoch;
        rep.best = true;
        save_inference_weights((out_ / "best.gguf").string(), trainer_->ema(), info_);
      }
      if (state_.best_epoch >= 0) rep.best_path = (out_ / "best.gguf").string();
      state_.epoch = epoch + 1;  // the next batch to train
      state_.batch = 0;
      save_last();
      state_.epoch = epoch;  // the loop's increment moves it on
      rep.last = (out_ / "last.gguf").string();
      if (cb_.on_epoch) cb_.on_epoch(rep);
    }
    state_.batch = 0;
    return fit_end::finished;
  }

  /// Validation of the EMA on the val split (letterboxed, no augmentation).
  GYOLO_COMPILED_ONCE eval_metrics validate() {
    evaluator<B> ev(trainer_->ema(), info_, ctx_);
    val_loader_->start_epoch(0, false, 0);
    int seen = 0;
    while (auto b = val_loader_->next()) {
      ev.add(*b);
      seen += b->B;
      if (o_.val_max_images > 0 && seen >= o_.val_max_images) break;
    }
    return ev.finish();
  }

 private:
  data::loader_options loader_options(bool train) const {
    data::loader_options lo;
    lo.imgsz = o_.imgsz;
    lo.batch_size = o_.batch;
    lo.workers = workers_;
    lo.seed = o_.seed;
    lo.strict = o_.strict;
    lo.augment = train && o_.augment;
    lo.hyp = o_.aug;
    lo.warn = cb_.warn;
    lo.tokenizer = &tok_;
    lo.shuffle = train;
    lo.all_captions = train;
    return lo;
  }
  int first_batch_of(int epoch) const { return epoch == resumed_epoch_ ? resumed_batch_ : 0; }

  void save_last() {
    gguf::writer w;
    write_model_info(w, info_);
    w.set_string("gyolo.train.state", state_.to_json().dump());
    w.set_string("gyolo.train.run", o_.to_json().dump());
    nn::save_tensors(w, model_, "model");
    trainer_->save_state(w);
    w.write((out_ / "last.gguf").string());
  }

  train_model<B>& model_;
  model_info info_;
  run_options o_;
  std::filesystem::path out_;
  context<B> ctx_;
  int workers_;
  fit_callbacks cb_;
  data::data_config cfg_;
  caption_tokenizer tok_;
  std::optional<trainer<B>> trainer_;
  std::optional<data::loader> train_loader_, val_loader_;
  run_state state_;
  int resumed_epoch_ = -1, resumed_batch_ = 0;
};

/// Compiled once in gyolo's library (src/train_cpu.cpp).
extern template class fitter<cpu>;

}  // namespace gyolo::train
