// The vision loss of Generalist YOLO (Training II): upstream's ComputeLossLH
// (utils/caption/loss_tal_dual.py) with per-instance masks (`--no-overlap`, the README's recipe),
// its value and its gradient with respect to every raw training output of head 55, in float32.
//
//   targets: assigner A (top-10) on the main one-to-many head d2, shared by d1 (aux) and d2;
//            assigner B (top-1) on the one-to-one head d3 (train/assigner.hpp)
//   cls      0.25 BCE(d1, A)/sum A + BCE(d2, A)/sum A + BCE(d3, B)/sum B            x 0.5
//   box      0.25 L(d1, A) + L(d2, A) + L(d3, B), L = sum_pos (1 - CIoU) w / sum      x 7.5
//   dfl      the same weighting of the distribution focal loss                        x 1.5
//   seg      0.25 sum_img m(mc1, p1) + sum_img m(mc2, p2): BCE of coef . proto against the
//            instance's mask, cropped to its box, / box area, mean over positives     x 2.5 / B
//   sem      20 (0.25 FL(s1) + FL(s2)) / 2, sigmoid focal loss (alpha 0.25, gamma 2), mean  x 2.5
//   dice     0.25 (1 - D(s1)) / 2 + (1 - D(s2)) / 2, softmax over the semantic channels  x 2.5
//   total    B x (sum of the six), what upstream back-propagates
//
// Defined where upstream is not: a batch without any object makes upstream divide by a zero
// target-score sum (an infinite loss); here such a sum counts as 1 (the class terms are then the
// plain BCE sums, every target zero), and the box, dfl and seg terms are 0 as upstream's.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "gyolo/core/error.hpp"
#include "gyolo/core/tensor.hpp"
#include "gyolo/train/assigner.hpp"

namespace gyolo::train {

/// Raw training outputs of head 55 (the shapes of panoptic_head::train_outputs), read-only.
struct vision_loss_outputs {
  std::array<std::array<cview<float>, 3>, 3> d;  // [k][level] [B, 4 reg + nc, H_l, W_l]; k = aux, main, one-to-one
  std::array<cview<float>, 2> mc;                // [B, nm, 1, A] mask coefficients (aux, main)
  std::array<cview<float>, 2> p;                 // [B, nm, Hm, Wm] prototypes (aux, main)
  std::array<cview<float>, 2> s;                 // [B, S, Hm, Wm] semantic logits (aux, main)
};
/// Where d(total)/d(output) is added (+=); a null view skips that output.
struct vision_loss_grads {
  std::array<std::array<view<float>, 3>, 3> d;
  std::array<view<float>, 2> mc, p, s;
};
/// The ground truth of a batch, upstream's layouts (caption/train.py's loop variables).
struct vision_targets {
  const float* targets = nullptr;  // [n, 6]: image, class, x, y, w, h (normalised xywh)
  int n = 0;
  const float* masks = nullptr;    // [n, Hm, Wm] one 0/1 mask per object, in targets' order
  const float* semasks = nullptr;  // [B, S, Hm, Wm] 0/1
};
struct vision_loss_config {
  std::array<float, 3> strides{8, 16, 32};
  int reg_max = 16;
  int topk = 10, topk_o2o = 1;
  float alpha = 0.5f, beta = 6.0f;
};
/// upstream's loss.detach(): the six terms after their gains, and the total (loss.sum() * B).
struct vision_loss_items {
  std::array<float, 6> items{};  // box, seg, cls, dfl, sem, dice
  float total = 0;
  static constexpr std::array<const char*, 6> names{"box", "seg", "cls", "dfl", "sem", "dice"};
};

namespace detail_vl {
/// d min(a, b) / da as torch.minimum: 1 where a < b, 1/2 on ties. (max: swap the roles.)
inline float dmin_da(float a, float b) { return a < b ? 1.0f : (a == b ? 0.5f : 0.0f); }
inline float dmax_da(float a, float b) { return a > b ? 1.0f : (a == b ? 0.5f : 0.0f); }
/// BCE with logits, torch's form: (1 - t) x + log1p(exp(-|x|)) + max(-x, 0).
inline float bce(float x, float t) { return (1.0f - t) * x + std::log1p(std::exp(-std::abs(x))) + std::max(-x, 0.0f); }
inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

/// CIoU(b1, b2) and its gradient with respect to b1 (b2 and CIoU's alpha held constant, as upstream).
inline float ciou_grad_b1(const box4& b1, const box4& b2, float g[4]) {
  constexpr float eps = 1e-7f;
  const float w1 = b1.x2 - b1.x1, h1 = b1.y2 - b1.y1 + eps;
  const float w2 = b2.x2 - b2.x1, h2 = b2.y2 - b2.y1 + eps;
  const float ix2 = std::min(b1.x2, b2.x2), ix1 = std::max(b1.x1, b2.x1);
  const float iy2 = std::min(b1.y2, b2.y2), iy1 = std::max(b1.y1, b2.y1);
  const float iw_raw = ix2 - ix1, ih_raw = iy2 - iy1;
  const float iw = std::max(iw_raw, 0.0f), ih = std::max(ih_raw, 0.0f);
  const float inter = iw * ih;
  const float uni = w1 * h1 + w2 * h2 - inter + eps;
  const float iou = inter / uni;
  const float cx2 = std::max(b1.x2, b2.x2), cx1 = std::min(b1.x1, b2.x1);
  const float cy2 = std::max(b1.y2, b2.y2), cy1 = std::min(b1.y1, b2.y1);
  const float cw = cx2 - cx1, ch = cy2 - cy1;
  const float c2 = cw * cw + ch * ch + eps;
  const float dx = b2.x1 + b2.x2 - b1.x1 - b1.x2, dy = b2.y1 + b2.y2 - b1.y1 - b1.y2;
  const float rho2 = (dx * dx + dy * dy) / 4.0f;
  constexpr double pi = 3.14159265358979323846;
  const float kv = float(4.0 / (pi * pi));
  const float da = std::atan(w2 / h2) - std::atan(w1 / h1);
  const float v = kv * (da * da);
  const float alpha = v / (v - iou + float(1.0 + 1e-7));
  const float ciou = iou - (rho2 / c2 + v * alpha);
  // backward: d ciou = d iou - d(rho2 / c2) - alpha d v
  float gx1 = 0, gy1 = 0, gx2 = 0, gy2 = 0;
  // iou = inter / uni, uni = w1 h1 + w2 h2 - inter + eps
  const float d_inter = 1.0f / uni + inter / (uni * uni);
  const float d_area1 = -inter / (uni * uni);
  const float d_w1 = d_area1 * h1, d_h1 = d_area1 * w1;
  // inter = clamp(iw) * clamp(ih); clamp(min=0) passes the gradient where its input >= 0
  const float d_iw = iw_raw >= 0 ? d_inter * ih : 0.0f, d_ih = ih_raw >= 0 ? d_inter * iw : 0.0f;
  gx2 += d_iw * dmin_da(b1.x2, b2.x2);
  gx1 -= d_iw * dmax_da(b1.x1, b2.x1);
  gy2 += d_ih * dmin_da(b1.y2, b2.y2);
  gy1 -= d_ih * dmax_da(b1.y1, b2.y1);
  // - rho2 / c2
  const float d_rho2 = -1.0f / c2, d_c2 = rho2 / (c2 * c2);
  gx1 += d_rho2 * (-dx / 2.0f);
  gx2 += d_rho2 * (-dx / 2.0f);
  gy1 += d_rho2 * (-dy / 2.0f);
  gy2 += d_rho2 * (-dy / 2.0f);
  const float d_cw = d_c2 * 2.0f * cw, d_ch = d_c2 * 2.0f * ch;
  gx2 += d_cw * dmax_da(b1.x2, b2.x2);
  gx1 -= d_cw * dmin_da(b1.x1, b2.x1);
  gy2 += d_ch * dmax_da(b1.y2, b2.y2);
  gy1 -= d_ch * dmin_da(b1.y1, b2.y1);
  // - alpha v, v = kv (atan(w2/h2) - atan(w1/h1))^2
  const float u = w1 / h1;
  const float d_atan1 = -alpha * kv * 2.0f * da * (-1.0f) / (1.0f + u * u);  // d(-alpha v)/d atan(w1/h1) * d atan/du
  const float d_w1v = d_atan1 / h1, d_h1v = d_atan1 * (-w1 / (h1 * h1));
  const float gw1 = d_w1 + d_w1v, gh1 = d_h1 + d_h1v;
  gx2 += gw1;
  gx1 -= gw1;
  gy2 += gh1;
  gy1 -= gh1;
  g[0] = gx1;
  g[1] = gy1;
  g[2] = gx2;
  g[3] = gy2;
  return ciou;
}
}  // namespace detail_vl

/// ComputeLossLH(outputs, targets, masks, semasks): the loss items, and d(total)/d(output) added to
/// `grads` (null views skipped).
inline vision_loss_items vision_loss(const vision_loss_config& cfg, const vision_loss_outputs& out, const vision_targets& gt_in,
                                     const vision_loss_grads& grads) {
  using namespace detail_vl;
  const int reg = cfg.reg_max, R4 = 4 * reg;
  const int B = out.d[0][0].n, no = out.d[0][0].c, nc = no - R4;
  GYOLO_CHECK(nc > 0, "vision_loss: head maps have " + std::to_string(no) + " channels, expected 4 x " + std::to_string(reg) + " + classes");
  std::vector<std::pair<int, int>> hw;
  std::vector<float> st(cfg.strides.begin(), cfg.strides.end());
  int A = 0;
  for (int l = 0; l < 3; ++l) {
    hw.push_back({out.d[0][l].h, out.d[0][l].w});
    A += out.d[0][l].h * out.d[0][l].w;
    for (int k = 0; k < 3; ++k)
      GYOLO_CHECK(out.d[k][l].shape() == out.d[0][l].shape(),
                  "vision_loss: head " + std::to_string(k) + " level " + std::to_string(l) + " is " + out.d[k][l].shape().str() +
                      ", expected " + out.d[0][l].shape().str());
  }
  const int img_h = int(float(hw[0].first) * st[0]), img_w = int(float(hw[0].second) * st[0]);
  const auto anc = make_anchors(hw, st);
  const int nm = out.mc[0].c, Hm = out.p[0].h, Wm = out.p[0].w, S = out.s[0].c;
  const std::int64_t HWm = std::int64_t(Hm) * Wm;
  for (int k = 0; k < 2; ++k) {
    const shape4 smc{B, nm, 1, A}, sp{B, nm, Hm, Wm}, ss{B, S, Hm, Wm};
    GYOLO_CHECK(out.mc[k].shape() == smc, "vision_loss: mask coefficients " + out.mc[k].shape().str() + ", expected " + smc.str());
    GYOLO_CHECK(out.p[k].shape() == sp, "vision_loss: prototypes " + out.p[k].shape().str() + ", expected " + sp.str());
    GYOLO_CHECK(out.s[k].shape() == ss, "vision_loss: semantic logits " + out.s[k].shape().str() + ", expected " + ss.str());
  }
  const gt_batch gt = preprocess_targets(gt_in.targets, gt_in.n, B, img_h, img_w);

  // anchor-major copies of each head: distributions [B, A, 64], class logits [B, A, nc]
  std::array<std::vector<float>, 3> distri, logits, boxes;  // boxes: decoded xyxy, grid units
  std::vector<int> level_of(static_cast<std::size_t>(A)), local(static_cast<std::size_t>(A));
  {
    int a = 0;
    for (int l = 0; l < 3; ++l)
      for (int p = 0; p < hw[std::size_t(l)].first * hw[std::size_t(l)].second; ++p, ++a) {
        level_of[std::size_t(a)] = l;
        local[std::size_t(a)] = p;
      }
  }
  for (int k = 0; k < 3; ++k) {
    distri[std::size_t(k)].resize(std::size_t(B) * A * R4);
    logits[std::size_t(k)].resize(std::size_t(B) * A * nc);
    boxes[std::size_t(k)].resize(std::size_t(B) * A * 4);
    for (int b = 0; b < B; ++b)
      for (int a = 0; a < A; ++a) {
        const auto& m = out.d[std::size_t(k)][std::size_t(level_of[std::size_t(a)])];
        const int p = local[std::size_t(a)];
        for (int c = 0; c < R4; ++c) distri[std::size_t(k)][(std::size_t(b) * A + a) * R4 + c] = m.channel(b, c)[p];
        for (int c = 0; c < nc; ++c) logits[std::size_t(k)][(std::size_t(b) * A + a) * nc + c] = m.channel(b, R4 + c)[p];
      }
    for (int b = 0; b < B; ++b)
      bbox_decode(distri[std::size_t(k)].data() + std::size_t(b) * A * R4, anc.points.data(), A, reg,
                  boxes[std::size_t(k)].data() + std::size_t(b) * A * 4);
  }
  // the assigners, on detached sigmoids and boxes in pixels
  std::vector<float> anc_px(std::size_t(A) * 2);
  for (int a = 0; a < A; ++a) {
    anc_px[2 * std::size_t(a)] = anc.points[2 * std::size_t(a)] * anc.strides[std::size_t(a)];
    anc_px[2 * std::size_t(a) + 1] = anc.points[2 * std::size_t(a) + 1] * anc.strides[std::size_t(a)];
  }
  auto assign = [&](int k, int topk) {
    std::vector<float> sc(logits[std::size_t(k)].size()), bx(boxes[std::size_t(k)].size());
    for (std::size_t i = 0; i < sc.size(); ++i) sc[i] = sigmoid(logits[std::size_t(k)][i]);
    for (std::size_t i = 0; i < bx.size(); ++i) bx[i] = boxes[std::size_t(k)][i] * anc.strides[(i / 4) % std::size_t(A)];
    tal_config tc;
    tc.topk = topk;
    tc.num_classes = nc;
    tc.alpha = cfg.alpha;
    tc.beta = cfg.beta;
    return task_aligned_assign(tc, sc.data(), bx.data(), anc_px.data(), B, A, gt);
  };
  const tal_result ta = assign(1, cfg.topk), tb = assign(2, cfg.topk_o2o);
  const float sum_a = std::max(ta.score_sum(), ta.score_sum() == 0.0f ? 1.0f : 0.0f);
  const float sum_b = std::max(tb.score_sum(), tb.score_sum() == 0.0f ? 1.0f : 0.0f);
  const float fB = float(B);
  constexpr float g_box = 7.5f, g_cls = 0.5f, g_dfl = 1.5f, g_sem = 2.5f, g_dice = 2.5f;
  const float g_seg = 2.5f / fB;
  vision_loss_items res;
  // gradient buffers in the anchor-major layout, scattered back at the end
  std::array<std::vector<float>, 3> gdist, glog;
  for (int k = 0; k < 3; ++k) {
    gdist[std::size_t(k)].assign(distri[std::size_t(k)].size(), 0.0f);
    glog[std::size_t(k)].assign(logits[std::size_t(k)].size(), 0.0f);
  }
  const std::array<float, 3> head_w{0.25f, 1.0f, 1.0f};
  const std::array<const tal_result*, 3> tgt{&ta, &ta, &tb};
  const std::array<float, 3> tsum{sum_a, sum_a, sum_b};

  // ---- cls: BCE summed over anchors and classes / target score sum
  double cls = 0;
  for (int k = 0; k < 3; ++k) {
    const auto& T = *tgt[std::size_t(k)];
    double s = 0;
    const float gk = fB * g_cls * head_w[std::size_t(k)] / tsum[std::size_t(k)];
    for (std::size_t i = 0; i < logits[std::size_t(k)].size(); ++i) {
      const float x = logits[std::size_t(k)][i], t = T.scores[i];
      s += double(bce(x, t));
      glog[std::size_t(k)][i] += gk * (sigmoid(x) - t);
    }
    cls += head_w[std::size_t(k)] * float(s) / tsum[std::size_t(k)];
  }
  res.items[2] = float(cls) * g_cls;

  // ---- box (CIoU) and dfl, on positives
  double box = 0, dfl = 0;
  std::vector<float> e(static_cast<std::size_t>(reg));
  for (int k = 0; k < 3; ++k) {
    const auto& T = *tgt[std::size_t(k)];
    double lb = 0, ld = 0;
    for (int b = 0; b < B; ++b)
      for (int a = 0; a < A; ++a) {
        const std::size_t ba = std::size_t(b) * A + a;
        if (!T.fg[ba]) continue;
        float w = 0;
        for (int c = 0; c < nc; ++c) w += T.scores[ba * std::size_t(nc) + std::size_t(c)];
        const float s_ = anc.strides[std::size_t(a)];
        const box4 tb4{T.boxes[4 * ba] / s_, T.boxes[4 * ba + 1] / s_, T.boxes[4 * ba + 2] / s_, T.boxes[4 * ba + 3] / s_};
        const float* pb = boxes[std::size_t(k)].data() + 4 * ba;
        float gb[4];
        const float ci = ciou_grad_b1({pb[0], pb[1], pb[2], pb[3]}, tb4, gb);
        lb += double((1.0f - ci) * w);
        // d total / d ciou = -B g_box head_w w / sum; pred box = (ax - d0, ay - d1, ax + d2, ay + d3)
        const float gc = -fB * g_box * head_w[std::size_t(k)] * w / tsum[std::size_t(k)];
        const float gd[4] = {-gb[0] * gc, -gb[1] * gc, gb[2] * gc, gb[3] * gc};
        // dfl target: bbox2dist(anchor, target, reg - 1)
        float t4[4];
        bbox2dist(anc.points[2 * std::size_t(a)], anc.points[2 * std::size_t(a) + 1], tb4, reg - 1, t4);
        const float gdf = fB * g_dfl * head_w[std::size_t(k)] * w / tsum[std::size_t(k)] / 4.0f;
        float dsum = 0;
        for (int sd = 0; sd < 4; ++sd) {
          const float* l = distri[std::size_t(k)].data() + ba * R4 + std::size_t(sd) * reg;
          float* gl = gdist[std::size_t(k)].data() + ba * R4 + std::size_t(sd) * reg;
          float mx = l[0];
          for (int j = 1; j < reg; ++j) mx = std::max(mx, l[j]);
          float se = 0;
          for (int j = 0; j < reg; ++j) se += (e[std::size_t(j)] = std::exp(l[j] - mx));
          float dexp = 0;
          for (int j = 0; j < reg; ++j) dexp += (e[std::size_t(j)] / se) * float(j);
          const int tl = int(t4[sd]), tr = tl + 1;
          const float wl = float(tr) - t4[sd], wr = 1.0f - wl;
          const float lse = mx + std::log(se);
          dsum += (lse - l[tl]) * wl + (lse - l[tr]) * wr;
          for (int j = 0; j < reg; ++j) {
            const float pj = e[std::size_t(j)] / se;
            // box: d d_sd / d l_j = p_j (j - d_sd); dfl: softmax - one-hot, weighted
            gl[j] += gd[sd] * pj * (float(j) - dexp) + gdf * (pj * (wl + wr) - (j == tl ? wl : 0.0f) - (j == tr ? wr : 0.0f));
          }
        }
        ld += double(dsum / 4.0f * w);
      }
    box += head_w[std::size_t(k)] * float(lb) / tsum[std::size_t(k)];
    dfl += head_w[std::size_t(k)] * float(ld) / tsum[std::size_t(k)];
  }
  res.items[0] = float(box) * g_box;
  res.items[3] = float(dfl) * g_dfl;

  // ---- seg: per image, the assigned instance masks (assigner A), heads aux (0.25) and main
  double seg = 0;
  {
    std::vector<int> first(std::size_t(B) + 1, 0);  // targets rows of each image, in order
    std::vector<int> rows;
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < gt_in.n; ++i)
        if (int(gt_in.targets[6 * i]) == b) rows.push_back(i);
    {
      std::vector<int> cnt(std::size_t(B), 0);
      for (int i = 0; i < gt_in.n; ++i) ++cnt[std::size_t(gt_in.targets[6 * i])];
      for (int b = 0; b < B; ++b) first[std::size_t(b) + 1] = first[std::size_t(b)] + cnt[std::size_t(b)];
    }
    std::vector<float> pm(static_cast<std::size_t>(HWm)), dpm(static_cast<std::size_t>(HWm));
    for (int k = 0; k < 2; ++k) {
      double lk = 0;
      for (int b = 0; b < B; ++b) {
        std::vector<int> pos;
        for (int a = 0; a < A; ++a)
          if (ta.fg[std::size_t(b) * A + a]) pos.push_back(a);
        if (pos.empty()) continue;
        const float npos = float(pos.size());
        double limg = 0;
        for (int a : pos) {
          const std::size_t ba = std::size_t(b) * A + a;
          const int row = rows[std::size_t(first[std::size_t(b)] + ta.gt_idx[ba])];
          const float* gm = gt_in.masks + std::size_t(row) * std::size_t(HWm);
          const float nx1 = ta.boxes[4 * ba] / float(img_w), ny1 = ta.boxes[4 * ba + 1] / float(img_h);
          const float nx2 = ta.boxes[4 * ba + 2] / float(img_w), ny2 = ta.boxes[4 * ba + 3] / float(img_h);
          const float area = (nx2 - nx1) * (ny2 - ny1);
          const float mx1 = nx1 * float(Wm), my1 = ny1 * float(Hm), mx2 = nx2 * float(Wm), my2 = ny2 * float(Hm);
          std::fill(pm.begin(), pm.end(), 0.0f);
          for (int c = 0; c < nm; ++c) {
            const float coef = out.mc[std::size_t(k)].channel(b, c)[a];
            const float* pr = out.p[std::size_t(k)].channel(b, c);
            for (std::int64_t q = 0; q < HWm; ++q) pm[std::size_t(q)] += coef * pr[q];
          }
          double s = 0;
          const float gj = fB * g_seg * (k == 0 ? 0.25f : 1.0f) / (float(HWm) * area * npos);
          for (int y = 0; y < Hm; ++y)
            for (int x = 0; x < Wm; ++x) {
              const std::size_t q = std::size_t(y) * Wm + x;
              const bool in = float(x) >= mx1 && float(x) < mx2 && float(y) >= my1 && float(y) < my2;
              dpm[q] = in ? gj * (sigmoid(pm[q]) - gm[q]) : 0.0f;
              if (in) s += double(bce(pm[q], gm[q]));
            }
          limg += s / double(HWm) / double(area);
          if (grads.mc[std::size_t(k)].data || grads.p[std::size_t(k)].data)
            for (int c = 0; c < nm; ++c) {
              const float* pr = out.p[std::size_t(k)].channel(b, c);
              if (grads.mc[std::size_t(k)].data) {
                double gc = 0;
                for (std::int64_t q = 0; q < HWm; ++q) gc += double(dpm[std::size_t(q)] * pr[q]);
                grads.mc[std::size_t(k)].channel(b, c)[a] += float(gc);
              }
              if (grads.p[std::size_t(k)].data) {
                const float coef = out.mc[std::size_t(k)].channel(b, c)[a];
                float* gp = grads.p[std::size_t(k)].channel(b, c);
                for (std::int64_t q = 0; q < HWm; ++q) gp[q] += dpm[std::size_t(q)] * coef;
              }
            }
        }
        lk += limg / double(npos);
      }
      seg += (k == 0 ? 0.25 : 1.0) * lk;
    }
  }
  res.items[1] = float(seg) * g_seg;

  // ---- semantic: sigmoid focal loss (mean) and Dice over softmax probabilities
  double sem = 0, dice = 0;
  const double nsem = double(B) * double(S) * double(HWm);
  for (int k = 0; k < 2; ++k) {
    const float hk = k == 0 ? 0.25f : 1.0f;
    double fl = 0, inter = 0, uni = 0;
    const float gf = fB * g_sem * 20.0f / 2.0f * hk / float(nsem);
    for (int b = 0; b < B; ++b)
      for (int c = 0; c < S; ++c) {
        const float* x = out.s[std::size_t(k)].channel(b, c);
        const float* t = gt_in.semasks + (std::size_t(b) * S + std::size_t(c)) * std::size_t(HWm);
        float* g = grads.s[std::size_t(k)].data ? grads.s[std::size_t(k)].channel(b, c) : nullptr;
        for (std::int64_t q = 0; q < HWm; ++q) {
          const float p = sigmoid(x[q]), ce = bce(x[q], t[q]);
          const float pt = p * t[q] + (1.0f - p) * (1.0f - t[q]);
          const float at = 0.25f * t[q] + 0.75f * (1.0f - t[q]);
          const float om = 1.0f - pt;
          fl += double(at * (ce * (om * om)));
          if (g) g[q] += gf * at * ((p - t[q]) * om * om + ce * 2.0f * om * (-(2.0f * t[q] - 1.0f) * p * (1.0f - p)));
        }
      }
    sem += hk * (fl / nsem) / 2.0 * 20.0;
    // Dice: p = softmax over channels per pixel, sums over the whole batch
    std::vector<std::vector<float>> probs(static_cast<std::size_t>(B));
    for (int b = 0; b < B; ++b) {
      auto& pr = probs[std::size_t(b)];
      pr.resize(std::size_t(S) * std::size_t(HWm));
      for (std::int64_t q = 0; q < HWm; ++q) {
        float mx = out.s[std::size_t(k)].channel(b, 0)[q];
        for (int c = 1; c < S; ++c) mx = std::max(mx, out.s[std::size_t(k)].channel(b, c)[q]);
        float se = 0;
        for (int c = 0; c < S; ++c) se += (pr[std::size_t(c) * std::size_t(HWm) + std::size_t(q)] = std::exp(out.s[std::size_t(k)].channel(b, c)[q] - mx));
        for (int c = 0; c < S; ++c) pr[std::size_t(c) * std::size_t(HWm) + std::size_t(q)] /= se;
      }
      const float* t = gt_in.semasks + std::size_t(b) * S * std::size_t(HWm);
      for (std::size_t i = 0; i < pr.size(); ++i) {
        inter += double(pr[i] * t[i]);
        uni += double(pr[i] + t[i]);
      }
    }
    const double I = double(float(inter)), U = double(float(uni));
    const double dc = (2.0 * I + 1.0) / (U + 1.0);
    dice += hk * (1.0 - dc) / 2.0;
    if (grads.s[std::size_t(k)].data) {
      const double scale = double(fB) * g_dice * hk * (-0.5);  // d total / d dice_coef
      for (int b = 0; b < B; ++b) {
        const auto& pr = probs[std::size_t(b)];
        const float* t = gt_in.semasks + std::size_t(b) * S * std::size_t(HWm);
        for (std::int64_t q = 0; q < HWm; ++q) {
          // d dice / d p_c = (2 g_c (U + 1) - (2 I + 1)) / (U + 1)^2; then softmax backward
          double dot = 0;
          for (int c = 0; c < S; ++c) {
            const std::size_t i = std::size_t(c) * std::size_t(HWm) + std::size_t(q);
            const double dp = scale * (2.0 * t[i] * (U + 1.0) - (2.0 * I + 1.0)) / ((U + 1.0) * (U + 1.0));
            dot += double(pr[i]) * dp;
          }
          for (int c = 0; c < S; ++c) {
            const std::size_t i = std::size_t(c) * std::size_t(HWm) + std::size_t(q);
            const double dp = scale * (2.0 * t[i] * (U + 1.0) - (2.0 * I + 1.0)) / ((U + 1.0) * (U + 1.0));
            grads.s[std::size_t(k)].channel(b, c)[q] += float(double(pr[i]) * (dp - dot));
          }
        }
      }
    }
  }
  res.items[4] = float(sem) * g_sem;
  res.items[5] = float(dice) * g_dice;

  // scatter the anchor-major gradients back into the head maps
  for (int k = 0; k < 3; ++k)
    for (int b = 0; b < B; ++b)
      for (int a = 0; a < A; ++a) {
        auto& gm = grads.d[std::size_t(k)][std::size_t(level_of[std::size_t(a)])];
        if (!gm.data) continue;
        const int p = local[std::size_t(a)];
        const std::size_t ba = std::size_t(b) * A + a;
        for (int c = 0; c < R4; ++c) gm.channel(b, c)[p] += gdist[std::size_t(k)][ba * R4 + std::size_t(c)];
        for (int c = 0; c < nc; ++c) gm.channel(b, R4 + c)[p] += glog[std::size_t(k)][ba * std::size_t(nc) + std::size_t(c)];
      }
  float sum = 0;
  for (float v : res.items) sum += v;
  res.total = sum * fB;
  return res;
}

}  // namespace gyolo::train
