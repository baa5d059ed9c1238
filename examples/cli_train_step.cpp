// gyolo train-step: one training iteration of upstream's caption/train.py loop on a batch saved as
// .npz, so that gyolo's training can be checked from outside (docs/training.md).
//   gyolo train-step --weights W.gguf --batch batch.npz --out result.npz [--ni K] [--nb N] [--epoch E]
//                    [--threads T] [--save STATE.gguf] [--resume] [--freeze N] [--frozen-bn] [--optimizer adamw|sgd]
// --save writes the model after the iteration with the training state (EMA, optimizer moments and
// steps, carried gradients: trainer::save_state) to a weights file; --resume starts from such a file
// (--weights) instead of fresh optimizer state. --freeze N leaves layers 0..N-1 untrained (train.py
// --freeze); --frozen-bn normalises with running statistics that stay as they are (tune.py).
// W.gguf: written by `weights_tools/convert.py --training` (every parameter unfolded, the auxiliary
// branch and the BatchNorm statistics kept). batch.npz: caption/train.py's loop variables, as
// np.savez writes them: imgs, ori_imgs [B, 3, H, W] uint8 (or float in [0, 1]); targets [n, 6];
// masks [n, H/4, W/4]; semasks [B, S, H/4, W/4]; caps [B, L] int64; src_masks [B, H, W] (must be
// all false: letterboxed training images) and cap_masks are accepted and not used, as upstream's
// Grit never reads cap_masks. result.npz: loss_items.<box_loss|seg_loss|cls_loss|dfl_loss|fcl_loss|
// dic_loss|cap_loss>, loss.vision, loss.caption, lr.vision [3], lr.caption [3], grad_vision.<name>
// and grad_language.<name> (every gradient right before that pass's optimizer step, after
// clipping), <name> (parameters and BatchNorm statistics after the iteration) and ema.<name>, in
// upstream's state_dict names. Fresh optimizer state, dropout off, float32.
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_commands.hpp"
#include "gyolo/gyolo.hpp"
#include "gyolo/io/gguf_write.hpp"
#include "gyolo/io/npz.hpp"
#include "gyolo/nn/save.hpp"
#include "gyolo/nn/module.hpp"
#include "gyolo/train/trainer.hpp"

namespace fs = std::filesystem;
using namespace gyolo;

namespace {

struct train_step_options {
  std::string weights, batch, out, save;
  int ni = 0, nb = 100, epoch = 0, threads = 0, freeze = 0;
  bool resume = false, frozen_bn = false;
  train::optimizer_kind optimizer = train::optimizer_kind::adamw;
};

void train_step_usage(std::ostream& o) {
  o << "usage: gyolo train-step --weights W.gguf --batch batch.npz --out result.npz [--ni K] [--nb N] [--epoch E] [--threads T]\n"
       "                        [--save STATE.gguf] [--resume] [--freeze N] [--frozen-bn] [--optimizer adamw|sgd]\n"
       "  one iteration of upstream's caption/train.py loop (vision pass, caption pass) on a batch saved with np.savez;\n"
       "  W.gguf from weights_tools/convert.py --training. See docs/training.md.\n";
}

train_step_options parse_train_step(int argc, char** argv) {
  train_step_options o;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      train_step_usage(std::cout);
      throw help_shown{};
    }
    if (a == "--resume") {
      o.resume = true;
      continue;
    }
    if (a == "--frozen-bn") {
      o.frozen_bn = true;
      continue;
    }
    if (i + 1 >= argc) throw error("option " + a + " needs a value");
    const std::string v = argv[++i];
    if (a == "--weights") o.weights = v;
    else if (a == "--batch") o.batch = v;
    else if (a == "--out") o.out = v;
    else if (a == "--ni") o.ni = parse_int(a, v, 0, 1 << 30);
    else if (a == "--nb") o.nb = parse_int(a, v, 1, 1 << 30);
    else if (a == "--epoch") o.epoch = parse_int(a, v, 0, 1 << 20);
    else if (a == "--threads") o.threads = parse_int(a, v, 0, 1024);
    else if (a == "--save") o.save = v;
    else if (a == "--freeze") o.freeze = parse_int(a, v, 0, 57);
    else if (a == "--optimizer") {
      if (v == "adamw" || v == "AdamW") o.optimizer = train::optimizer_kind::adamw;
      else if (v == "sgd" || v == "SGD") o.optimizer = train::optimizer_kind::sgd;
      else throw error("--optimizer wants adamw or sgd, got '" + v + "'");
    }
    else throw error("unknown option '" + a + "' (gyolo train-step --help)");
  }
  if (o.weights.empty() || o.batch.empty() || o.out.empty()) throw error("train-step needs --weights, --batch and --out");
  return o;
}

/// An array of the batch as float (uint8 images divided by 255 when `images`), with its shape checked.
std::vector<float> as_float(const std::map<std::string, npy::array>& z, const std::string& key, std::size_t rank, bool images,
                            std::vector<std::int64_t>& shape) {
  auto it = z.find(key);
  if (it == z.end()) throw error("batch: array '" + key + "' is missing");
  const auto& a = it->second;
  if (a.shape.size() != rank)
    throw error("batch: '" + key + "' has shape " + npy::shape_str(a.shape) + ", expected " + std::to_string(rank) + " dimensions");
  shape = a.shape;
  std::vector<float> v;
  if (a.dtype == "|u1" || a.dtype == "|b1") {
    const auto u = a.as<std::uint8_t>();
    v.assign(u.begin(), u.end());
    if (images)
      for (float& x : v) x /= 255.0f;
  } else if (a.dtype == "<f4") {
    v = a.as<float>();
  } else if (a.dtype == "<f8") {
    const auto d = a.as<double>();
    v.assign(d.begin(), d.end());
  } else {
    throw error("batch: '" + key + "' has dtype " + a.dtype + " (uint8, float32 or float64 expected)");
  }
  for (float x : v)
    if (!std::isfinite(x)) throw error("batch: '" + key + "' holds a NaN or infinite value");
  return v;
}

}  // namespace

void check_train_step_args(int argc, char** argv) { (void)parse_train_step(argc, argv); }

int train_step_command(int argc, char** argv) {
  const auto o = parse_train_step(argc, argv);
  gguf::file f(o.weights);
  if (!f.has("gyolo.yaml")) f.fail("no gyolo.yaml metadata: not a weights file made by weights_tools/convert.py");
  if (!f.find("model.27.conv.weight") || !f.find("model.3.cv2.0.m.0.cv1.conv1.bn.running_mean"))
    f.fail("holds no training tensors (auxiliary branch, unfolded BatchNorms): convert with weights_tools/convert.py --training");
  const auto vc = variant_from_yaml(nlohmann::json::parse(f.get_string("gyolo.yaml")), o.weights);
  if (!f.find("model.56.grit_transformer.cap_generator.fc.weight") || !f.has("gyolo.grit_config"))
    f.fail("holds no caption head (model.56): train-step runs both of upstream's passes");
  const auto gc = grit_config::from_json(nlohmann::json::parse(f.get_string("gyolo.grit_config")));
  train_model<cpu> m;
  m.init(vc, gc);
  {
    gguf_weights ws(f);
    nn::load_tensors(m, ws, "model");
  }

  const auto z = npz::load(o.batch);
  std::vector<std::int64_t> si, so, st, sm, ss, sc;
  const auto imgs = as_float(z, "imgs", 4, true, si);
  const auto ori = as_float(z, "ori_imgs", 4, true, so);
  const auto targets = as_float(z, "targets", 2, false, st);
  const auto masks = as_float(z, "masks", 3, false, sm);
  const auto semasks = as_float(z, "semasks", 4, false, ss);
  if (si != so) throw error("batch: imgs " + npy::shape_str(si) + " and ori_imgs " + npy::shape_str(so) + " differ in shape");
  const int B = int(si[0]), H = int(si[2]), W = int(si[3]);
  if (si[1] != 3 || B < 1 || H % 32 || W % 32 || H < 32 || W < 32)
    throw error("batch: imgs has shape " + npy::shape_str(si) + ", expected [B, 3, H, W] with H and W multiples of 32");
  if (st[1] != 6) throw error("batch: targets has shape " + npy::shape_str(st) + ", expected [n, 6]");
  if (sm[0] != st[0] || sm[1] != H / 4 || sm[2] != W / 4)
    throw error("batch: masks has shape " + npy::shape_str(sm) + ", expected [" + std::to_string(st[0]) + ", " + std::to_string(H / 4) +
                ", " + std::to_string(W / 4) + "] (one per target, at 1/4 resolution)");
  if (ss[0] != B || ss[1] != vc.nc + vc.sem_nc || ss[2] != H / 4 || ss[3] != W / 4)
    throw error("batch: semasks has shape " + npy::shape_str(ss) + ", expected [" + std::to_string(B) + ", " +
                std::to_string(vc.nc + vc.sem_nc) + ", " + std::to_string(H / 4) + ", " + std::to_string(W / 4) + "]");
  auto ci = z.find("caps");
  if (ci == z.end()) throw error("batch: array 'caps' is missing");
  std::vector<std::int64_t> caps;
  if (ci->second.dtype == "<i8") caps = ci->second.as<std::int64_t>();
  else if (ci->second.dtype == "<i4") {
    const auto c32 = ci->second.as<std::int32_t>();
    caps.assign(c32.begin(), c32.end());
  } else {
    throw error("batch: 'caps' has dtype " + ci->second.dtype + " (int64 expected)");
  }
  if (ci->second.shape.size() != 2 || ci->second.shape[0] != B)
    throw error("batch: caps has shape " + npy::shape_str(ci->second.shape) + ", expected [" + std::to_string(B) + ", L]");
  if (auto sm_it = z.find("src_masks"); sm_it != z.end()) {
    for (char c : sm_it->second.bytes)
      if (c != 0) throw error("batch: src_masks marks padding; train-step supports letterboxed square training images only (all false)");
  }

  tensor<float> X({B, 3, H, W}), XO({B, 3, H, W});
  std::copy(imgs.begin(), imgs.end(), X.data());
  std::copy(ori.begin(), ori.end(), XO.data());
  context<cpu> ctx(o.threads);
  auto fz = train::freeze_options::first_layers(o.freeze);
  fz.batchnorm = o.frozen_bn;
  train::train_hyp hyp;
  hyp.optimizer_type = o.optimizer;
  train::trainer<cpu> tr(m, ctx, hyp, fz);
  if (o.resume) tr.restore_state(f);
  npz::writer out;
  tr.before_step = [&](const char* task, const std::vector<train::param_ref>& all) {
    const std::string pre = std::string(task) == "vision" ? "grad_vision." : "grad_language.";
    for (const auto& r : all)
      if (r.p->has_grad) {
        std::vector<std::int64_t> sh(r.p->shape.begin(), r.p->shape.end());
        out.add(pre + r.name, r.p->grad, sh);
      }
  };
  train::train_batch b;
  b.imgs = X.cv();
  b.ori_imgs = XO.cv();
  b.targets = targets.data();
  b.n = int(st[0]);
  b.masks = masks.data();
  b.semasks = semasks.data();
  b.caps = caps.data();
  b.seq_len = int(ci->second.shape[1]);
  train::iteration it;
  it.ni = o.ni;
  it.nb = o.nb;
  it.epoch = o.epoch;
  const auto r = tr.step(b, it);

  static const char* item_names[] = {"box_loss", "seg_loss", "cls_loss", "dfl_loss", "fcl_loss", "dic_loss"};
  for (int i = 0; i < 6; ++i) out.add(std::string("loss_items.") + item_names[i], &r.vision.items[std::size_t(i)], {1});
  const float cap_item = float(r.caption / B);  // upstream's loss_items: l_cap (the backpropagated value is l_cap * B)
  out.add("loss_items.cap_loss", &cap_item, {1});
  const float lv = r.vision.total, lc = float(r.caption);
  out.add("loss.vision", &lv, {1});
  out.add("loss.caption", &lc, {1});
  out.add("lr.vision", r.lr_vision.data(), {3});
  out.add("lr.caption", r.lr_caption.data(), {3});
  struct state_writer {
    npz::writer& w;
    std::string pre;
    void param(const std::string& n, param& p) { w.add(pre + n, p.value, std::vector<std::int64_t>(p.shape.begin(), p.shape.end())); }
    void buffer(const std::string& n, buffer& q) { w.add(pre + n, q.value, std::vector<std::int64_t>(q.shape.begin(), q.shape.end())); }
  };
  nn::walk(m, "model", state_writer{out, ""});
  nn::walk(tr.ema(), "model", state_writer{out, "ema."});
  // atomic: a failed run leaves no result file
  const fs::path dst(o.out), tmp = dst.string() + ".tmp";
  out.save(tmp.string());
  if (!o.save.empty()) {
    gguf::writer w;
    w.copy_metadata(f);
    nn::save_tensors(w, m, "model");
    tr.save_state(w);
    const fs::path sdst(o.save), stmp = sdst.string() + ".tmp";
    try {
      w.write(stmp.string());
    } catch (...) {
      fs::remove(tmp);
      throw;
    }
    fs::rename(stmp, sdst);
  }
  fs::rename(tmp, dst);
  nlohmann::ordered_json j;
  j["command"] = "train-step";
  j["ni"] = o.ni;
  j["loss_vision"] = lv;
  j["loss_caption"] = lc;
  for (int i = 0; i < 6; ++i) j[item_names[i]] = r.vision.items[std::size_t(i)];
  j["out"] = o.out;
  std::cout << j.dump() << std::endl;
  return 0;
}
