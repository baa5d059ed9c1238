// gyolo train: trains a GYOLO on a dataset in upstream's layout (docs/training.md).
//   gyolo train --data DATA.yaml [--variant tiny|nano|gyolo|scaled:W] [--weights TRAIN.gguf] [--epochs N]
//               [--batch N] [--imgsz N] [--threads N] [--workers N] [--out DIR] [--seed S]
//               [--close-mosaic N] [--no-augment] [--val-every N] [--strict] [--vocab FILE] [--json]
//               [--freeze N] [--lr0 X]
//   gyolo train --resume DIR/last.gguf [--threads N] [--workers N] [--json]
// On a terminal: a progress bar with ETA, images/s and the running losses, and an epoch summary;
// otherwise (or with --json) one JSON line per epoch. Ctrl-C saves last.gguf and exits; --resume
// continues exactly where the run stopped.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_commands.hpp"
#include "gyolo/gyolo.hpp"
#include "gyolo/train/fit.hpp"
#include "gyolo/train/setup.hpp"

namespace fs = std::filesystem;
using namespace gyolo;

namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_sigint(int) { g_stop.store(true); }

struct train_cli {
  train::run_options run;
  std::string variant = "nano", weights, out = "runs/train", resume, vocab, hyp;
  double lr0 = 0;  // 0: the hyperparameters' own
  int threads = 0, workers = 2;
  bool json = false, vocab_subset = false;
};

void train_usage(std::ostream& o) {
  o << "usage: gyolo train --data DATA.yaml [--variant tiny|nano|gyolo|scaled:W] [--weights TRAIN.gguf] [--epochs 100]\n"
       "                   [--batch 16] [--imgsz 640] [--threads N] [--workers 2] [--out runs/train] [--seed 0]\n"
       "                   [--close-mosaic 10] [--no-augment] [--val-every 1] [--val-max N] [--strict] [--vocab FILE] [--vocab-subset] [--json]\n"
       "                   [--freeze N] [--hyp HYP.yaml] [--lr0 0.004]\n"
       "       gyolo train --resume DIR/last.gguf [--threads N] [--workers N] [--json]\n"
       "  Trains on a dataset in upstream's layout (images/, labels/, stuff/, annotations/captions_*.json, a data yaml).\n"
       "  Writes DIR/last.gguf (resumable) and DIR/best.gguf (the best epoch's EMA weights, for gyolo predict).\n"
       "  Ctrl-C saves last.gguf and exits; --resume continues exactly where the run stopped.\n"
       "  --vocab-subset keeps only the special tokens and the vocabulary's tokens that the train captions use (a smaller\n"
       "  caption head; captions can then only use those words).\n"
       "  --weights DIR/last.gguf fine-tunes from that run's EMA weights (as upstream's strip_optimizer keeps them); an\n"
       "  inference weights file (a best.gguf, models/gyolo-shapes.gguf) has no auxiliary branch: it starts from --seed.\n"
       "  --freeze N leaves layers 0..N-1 untrained (train.py --freeze); --freeze 56 trains the caption head alone on\n"
       "  the features of the fixed vision layers (caption/tune.py's stage; best.gguf is then the best BLEU-4).\n"
       "  --hyp reads hyperparameters from a yaml map as upstream's hyp.*.yaml (lr0, lrf, momentum, weight_decay,\n"
       "  warmup_*, clip_vision, clip_caption, caption_loss_gain and the augmentation keys); --lr0 sets the initial\n"
       "  learning rate (the caption head's is half of it). See docs/training.md.\n";
}

/// Upstream hyp.*.yaml keys that gyolo's losses do not read (their values are fixed as upstream's
/// defaults): accepted with a warning, so that upstream's files can be given as they are.
constexpr const char* upstream_only_hyp[] = {"box", "cls", "cls_pw", "obj", "obj_pw", "dfl", "iou_t", "anchor_t", "fl_gamma", "copy_paste",
                                             "label_smoothing"};

/// --hyp: a yaml map of numbers over the run's hyperparameters (the keys of gyolo.train.run's "hyp").
void apply_hyp_file(train::run_options& run, const std::string& path) {
  const auto y = data::read_yaml_file(path);
  const std::string where = "--hyp '" + path + "'";
  if (!y.is_map()) throw error(where + ": expected a map of hyperparameters (key: number)");
  nlohmann::json j = run.to_json();
  auto& h = j["hyp"];
  for (const auto& [k, n] : y.entries) {
    const std::string at = where + " line " + std::to_string(n.line) + ": ";
    if (std::find(std::begin(upstream_only_hyp), std::end(upstream_only_hyp), k) != std::end(upstream_only_hyp)) {
      std::cerr << "warning: " << at << "'" << k << "' is not used by gyolo (upstream's default applies)\n";
      continue;
    }
    if (!h.contains(k) || k == "optimizer") throw error(at + "unknown hyperparameter '" + data::detail::yaml::printable(k) + "'");
    double v = 0;
    std::size_t used = 0;
    try {
      v = std::stod(n.text, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (!n.is_scalar() || used == 0 || used != n.text.size() || !std::isfinite(v) || v < 0)
      throw error(at + k + " must be a number >= 0, got '" + data::detail::yaml::printable(n.text) + "'");
    h[k] = v;
  }
  run = train::run_options::from_json(j);
}

train_cli parse_train(int argc, char** argv) {
  train_cli c;
  bool have_data = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      train_usage(std::cout);
      throw help_shown{};
    }
    if (a == "--json") {
      c.json = true;
      continue;
    }
    if (a == "--strict") {
      c.run.strict = true;
      continue;
    }
    if (a == "--vocab-subset") {
      c.vocab_subset = true;
      continue;
    }
    if (a == "--no-augment") {
      c.run.augment = false;
      continue;
    }
    if (i + 1 >= argc) throw error("option " + a + " needs a value");
    const std::string v = argv[++i];
    if (a == "--data") {
      c.run.data = v;
      have_data = true;
    } else if (a == "--variant") c.variant = v;
    else if (a == "--weights") c.weights = v;
    else if (a == "--epochs") c.run.epochs = parse_int(a, v, 1, 100000);
    else if (a == "--batch") c.run.batch = parse_int(a, v, 1, 4096);
    else if (a == "--imgsz") c.run.imgsz = parse_int(a, v, 32, 8192);
    else if (a == "--threads") c.threads = parse_int(a, v, 0, 1024);
    else if (a == "--workers") c.workers = parse_int(a, v, 0, 64);
    else if (a == "--out") c.out = v;
    else if (a == "--seed") c.run.seed = std::uint64_t(parse_int(a, v, 0, 1 << 30));
    else if (a == "--close-mosaic") c.run.close_mosaic = parse_int(a, v, 0, 100000);
    else if (a == "--val-every") c.run.val_every = parse_int(a, v, 0, 100000);
    else if (a == "--val-max") c.run.val_max_images = parse_int(a, v, 0, 1 << 30);
    else if (a == "--vocab") c.vocab = v;
    else if (a == "--resume") c.resume = v;
    else if (a == "--freeze") c.run.freeze = parse_int(a, v, 0, 56);
    else if (a == "--hyp") c.hyp = v;
    else if (a == "--lr0") {
      c.lr0 = parse_real(a, v, 0, 1);
      if (!(c.lr0 > 0)) throw error("--lr0 must be in (0, 1], got " + v);
    }
    else throw error("unknown option '" + a + "' (gyolo train --help)");
  }
  if (c.resume.empty() && !have_data) throw error("train needs --data DATA.yaml (or --resume DIR/last.gguf)");
  if (!c.resume.empty() && (!c.hyp.empty() || c.lr0 > 0)) throw error("--resume continues a run with its own hyperparameters: drop --hyp and --lr0");
  if (c.run.imgsz % 32) throw error("--imgsz must be a multiple of 32, got " + std::to_string(c.run.imgsz));
  return c;
}

struct val_args {
  std::string weights, data_yaml;
  int imgsz = 640, batch = 8, threads = 0, workers = 2, beam_len = 0;
};

val_args parse_val(int argc, char** argv) {
  val_args o;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << "usage: gyolo val --weights W.gguf --data DATA.yaml [--imgsz 640] [--batch 8] [--threads N] [--workers 2] [--beam-len N]\n"
                   "  box and mask mAP, semantic mIoU, panoptic PQ and caption BLEU / CIDEr on the val split, as gyolo train\n"
                   "  validates after each epoch (one JSON line). --beam-len sets the caption length (the file's otherwise).\n";
      throw help_shown{};
    }
    if (i + 1 >= argc) throw error("option " + a + " needs a value");
    const std::string v = argv[++i];
    if (a == "--weights") o.weights = v;
    else if (a == "--data") o.data_yaml = v;
    else if (a == "--imgsz") o.imgsz = parse_int(a, v, 32, 8192);
    else if (a == "--batch") o.batch = parse_int(a, v, 1, 4096);
    else if (a == "--threads") o.threads = parse_int(a, v, 0, 1024);
    else if (a == "--workers") o.workers = parse_int(a, v, 0, 64);
    else if (a == "--beam-len") o.beam_len = parse_int(a, v, 1, 128);
    else throw error("unknown option '" + a + "' (gyolo val --help)");
  }
  if (o.weights.empty() || o.data_yaml.empty()) throw error("val needs --weights and --data");
  if (o.imgsz % 32) throw error("--imgsz must be a multiple of 32, got " + std::to_string(o.imgsz));
  return o;
}

}  // namespace

/// The model in a gyolo-written or converted (--training) file: its info, and m built and loaded
/// from the tensors under `prefix` ("model", or "ema.model" in a last.gguf). With `aux` false (an
/// inference weights file: convert.py without --training, a best.gguf, models/gyolo-shapes.gguf)
/// the auxiliary branch, which such files do not hold, keeps its initialisation (seed), as
/// upstream's train.py leaves the keys that intersect_dicts drops.
train::model_info load_train_model(const gguf::file& f, const std::string& path, train_model<cpu>& m, const std::string& prefix = "model",
                                   bool aux = true, std::uint64_t seed = 0) {
  auto info = train::read_model_info(f, path);
  m.init(info.variant, info.grit);
  if (!aux) train::init_weights(m, info.variant.nc, seed);
  gguf_weights ws(f);
  nn::load_tensors(m, ws, prefix, nn::parts{aux, true});
  return info;
}

void check_train_args(int argc, char** argv) { (void)parse_train(argc, argv); }
void check_val_args(int argc, char** argv) { (void)parse_val(argc, argv); }

int train_command(int argc, char** argv) {
  auto c = parse_train(argc, argv);
  if (!c.hyp.empty()) apply_hyp_file(c.run, c.hyp);
  if (c.lr0 > 0) c.run.hyp.lr0 = c.lr0;
  const bool tty = !c.json && isatty(STDOUT_FILENO);
  train::model_info info;
  train_model<cpu> m;
  std::optional<gguf::file> resume_file;
  if (!c.resume.empty()) {
    resume_file.emplace(c.resume);
    const auto& f = *resume_file;
    if (!f.has("gyolo.train.run")) f.fail("holds no gyolo.train.run: not a last.gguf written by gyolo train");
    try {
      c.run = train::run_options::from_json(nlohmann::json::parse(f.get_string("gyolo.train.run")));
    } catch (const nlohmann::json::exception& e) {
      f.fail(std::string("gyolo.train.run is malformed: ") + e.what());
    }
    c.out = fs::path(c.resume).parent_path().string();
    info = load_train_model(f, c.resume, m);
  } else {
    c.run.data = fs::absolute(c.run.data).lexically_normal().string();  // --resume may run from elsewhere
    const auto cfg = data::read_data_yaml(c.run.data);
    const int sem_nc = int(cfg.stuff_names.size());
    if (!c.weights.empty()) {  // fine-tune a converted (--training) or gyolo-written checkpoint
      gguf::file f(c.weights);
      // a last.gguf: its EMA weights, which upstream's strip_optimizer keeps as a run's result
      const bool ema = f.find("ema.model.27.conv.weight") != nullptr;
      const bool aux = ema || f.find("model.27.conv.weight") != nullptr;
      if (!aux)
        std::cerr << "gyolo: warning: '" << c.weights << "' is an inference weights file: the auxiliary branch (layers 27-42 and "
                     "47-50, used only in training) starts from its initialisation (--seed), as upstream's train.py does with the "
                     "keys a stripped checkpoint lacks\n";
      info = load_train_model(f, c.weights, m, ema ? "ema.model" : "model", aux, c.run.seed);
      if (info.variant.nc != cfg.nc || info.variant.sem_nc != sem_nc)
        throw error("--weights '" + c.weights + "' has nc = " + std::to_string(info.variant.nc) + " and " +
                    std::to_string(info.variant.sem_nc) + " stuff channels, the data " + std::to_string(cfg.nc) + " and " +
                    std::to_string(sem_nc) + " (fine-tuning to other classes is not supported yet)");
    } else {
      std::string vocab_path = c.vocab;  // a fine-tuned file has its own vocabulary
      if (vocab_path.empty()) {
        // vocab.txt beside the data yaml, $GYOLO_VOCAB, the installed copy (<prefix>/share/gyolo beside
        // <prefix>/bin/gyolo), then the source tree's copy (running from a checkout)
        const fs::path beside = fs::path(c.run.data).parent_path() / "vocab.txt";
        const char* env = std::getenv("GYOLO_VOCAB");
        std::error_code ec;
        const fs::path installed = fs::canonical("/proc/self/exe", ec).parent_path().parent_path() / "share" / "gyolo" / "vocab.txt";
        if (fs::exists(beside)) vocab_path = beside.string();
        else if (env && *env) vocab_path = env;
        else if (!ec && fs::exists(installed, ec)) vocab_path = installed.string();
        else if (fs::exists("weights_tools/data/vocab.txt")) vocab_path = "weights_tools/data/vocab.txt";
        else throw error("no caption vocabulary: pass --vocab FILE (upstream's data/vocab.txt; gyolo's copy is weights_tools/data/vocab.txt)");
      }
      info = train::new_model_info(cfg, c.variant, train::read_vocab(vocab_path), c.vocab_subset);
      m.init(info.variant, info.grit);
      train::init_weights(m, info.variant.nc, c.run.seed);
    }
    info.names = cfg.names;
    info.stuff_names = cfg.stuff_names;
    info.name = "gyolo-" + c.variant;
  }

  train::fit_callbacks cb;
  cb.warn = [](const std::string& w) { std::cerr << "warning: " << w << "\n"; };
  if (tty)
    cb.on_batch = [](const train::batch_progress& p) {
      std::string l = "\r" + std::to_string(p.epoch + 1) + "/" + std::to_string(p.epochs) + " " + progress_bar(p.batch, p.batches) + " " +
                      fmt(p.images_per_s, 1) + " img/s ETA " + hms(p.eta_s);
      for (int i = 0; i < 7; ++i) l += std::string(" ") + train::loss_means::names[i] + " " + fmt(p.losses->mean(i), 3);
      std::cout << l << "\033[K" << std::flush;
    };
  cb.on_epoch = [tty](const train::epoch_report& r) {
    if (tty) {
      std::cout << "\r\033[K" << "epoch " << r.epoch + 1 << "/" << r.epochs << "  " << fmt(r.train_s, 0) << " s, "
                << fmt(r.images_per_s, 1) << " img/s, loss";
      for (int i = 0; i < 7; ++i) std::cout << " " << train::loss_means::names[i] << " " << fmt(r.losses.mean(i), 3);
      std::cout << "\n";
      if (r.val) std::cout << "  val: " << r.val->summary() << (r.best ? "  (best)" : "") << "\n";
      std::cout << std::flush;
    } else {
      std::cout << r.to_json().dump() << std::endl;
    }
  };

  train::fitter<cpu> fit(m, info, c.run, c.out, c.threads, c.workers, cb);
  if (resume_file) fit.resume(*resume_file);
  resume_file.reset();
  std::signal(SIGINT, on_sigint);
  std::signal(SIGTERM, on_sigint);
  const auto end = fit.run(&g_stop);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  if (end == train::fit_end::stopped) {
    if (tty) std::cout << "\n";
    std::cerr << "stopped: saved " << (fs::path(c.out) / "last.gguf").string() << " (epoch " << fit.state().epoch + 1 << ", batch "
              << fit.state().batch << "); continue with gyolo train --resume " << (fs::path(c.out) / "last.gguf").string() << "\n";
    return 130;
  }
  return 0;
}

// gyolo val: the validation of gyolo train on a weights file (e.g. best.gguf) and a data yaml's val split.
int val_command(int argc, char** argv) {
  const auto [weights, data_yaml, imgsz, batch, threads, workers, beam_len] = parse_val(argc, argv);
  gguf::file f(weights);
  auto info = train::read_model_info(f, weights);
  if (beam_len) info.grit.beam_len = beam_len;
  train_model<cpu> m;
  m.init(info.variant, info.grit, false);
  {
    gguf_weights ws(f);
    nn::load_tensors(m, ws, "model", nn::parts{false, true});
  }
  const auto cfg = data::read_data_yaml(data_yaml);
  const caption_tokenizer tok(info.vocab);
  data::loader_options lo;
  lo.imgsz = imgsz;
  lo.batch_size = batch;
  lo.workers = workers;
  lo.tokenizer = &tok;
  lo.all_captions = false;
  lo.warn = [](const std::string& w) { std::cerr << "warning: " << w << "\n"; };
  data::loader ld(cfg, cfg.val, lo);
  context<cpu> ctx(threads);
  train::evaluator<cpu> ev(m, info, ctx);
  ld.start_epoch(0, false, 0);
  while (auto b = ld.next()) ev.add(*b);
  auto j = ev.finish().to_json();
  j["weights"] = weights;
  j["data"] = data_yaml;
  j["imgsz"] = imgsz;
  j["beam_len"] = info.grit.beam_len;
  std::cout << j.dump() << std::endl;
  return 0;
}
