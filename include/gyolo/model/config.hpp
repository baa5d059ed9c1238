// Compile-time variant descriptions. A variant is the post-parse argument list of the kept layers of
// a gyolo.yaml-shaped model (after width_multiple scaling, as upstream's parse_model does). The
// weights file carries the yaml it was trained with; at load the file's values are derived again
// and must equal the compile-time variant, field by field.
#pragma once
#include <array>
#include <cmath>
#include <string>

namespace gyolo {

struct elan_args {
  int c2, c3, c4, c5;
  constexpr bool operator==(const elan_args&) const = default;
};

/// CBLinear's output split (c2s), up to three chunks.
struct cbl_args {
  int n = 0;
  std::array<int, 3> c{};
  constexpr int sum() const { return c[0] + c[1] + c[2]; }
  constexpr bool operator==(const cbl_args&) const = default;
};

struct variant_config {
  int nc = 80;       // detection classes
  int sem_nc = 93;   // extra semantic channels (stuff + other + unlabeled); semantic map has nc + sem_nc
  int nm = 32;       // mask coefficients / prototypes
  int conv1 = 64, conv2 = 128;                       // layers 1, 2
  elan_args e3{256, 128, 64, 1};                     // 3
  int ad4 = 256;                                     // 4
  elan_args e5{512, 256, 128, 1};                    // 5
  int ad6 = 512;                                     // 6
  elan_args e7{512, 512, 256, 1};                    // 7
  int ad8 = 512;                                     // 8
  elan_args e9{512, 512, 256, 1};                    // 9
  int spp_c2 = 512, spp_c3 = 256;                    // 10
  int psa = 512;                                     // 11
  elan_args e14{512, 512, 256, 1};                   // 14
  elan_args e17{256, 256, 128, 1};                   // 17 (B)
  int ad18 = 256;                                    // 18
  elan_args e20{512, 512, 256, 1};                   // 20 (B)
  int ad21 = 512;                                    // 21
  elan_args e23{512, 512, 256, 1};                   // 23 (B)
  // Auxiliary (training-only) branch: 24-42, 47-50.
  cbl_args cbl24{1, {256, 0, 0}}, cbl25{2, {256, 512, 0}}, cbl26{3, {256, 512, 512}};  // 24-26 CBLinear
  int conv27 = 64, conv28 = 128;                     // 27, 28
  elan_args e29{256, 128, 64, 1};                    // 29
  int ad30 = 256;                                    // 30
  elan_args e32{512, 256, 128, 1};                   // 32
  int ad33 = 512;                                    // 33
  elan_args e35{512, 512, 256, 1};                   // 35
  int ad36 = 512;                                    // 36
  elan_args e38{512, 512, 256, 1};                   // 38
  elan_args e39{512, 256, 128, 2};                   // 39
  int dw41 = 256, conv42 = 256;                      // 41, 42
  elan_args e43{256, 256, 128, 2};                   // 43
  int dw45 = 256, conv46 = 256;                      // 45, 46
  elan_args e47{512, 256, 128, 2};                   // 47
  int dw49 = 256, conv50 = 256;                      // 49, 50
  elan_args e51{256, 256, 128, 2};                   // 51
  int dw53 = 256, conv54 = 256;                      // 53, 54

  constexpr bool operator==(const variant_config&) const = default;

  /// Every layer argument, once: v.c2(layer, module, int&...) (first yaml argument, scaled by
  /// width), v.arg(layer, position, int&...) (an unscaled argument), v.elan(layer, module,
  /// elan_args&...) (c2 scaled; c3, c4, c5 unscaled), v.cbl(layer, cbl_args&...) (CBLinear's
  /// chunks, unscaled). variant_from_yaml, scaled_gyolo and describe_mismatch are derived from it.
  template <class V, class... S>
  static constexpr void fields(V& v, S&... s) {
    v.c2(1, "Conv", s.conv1...);
    v.c2(2, "Conv", s.conv2...);
    v.elan(3, "RepNCSPELAN4", s.e3...);
    v.c2(4, "ADown", s.ad4...);
    v.elan(5, "RepNCSPELAN4", s.e5...);
    v.c2(6, "ADown", s.ad6...);
    v.elan(7, "RepNCSPELAN4", s.e7...);
    v.c2(8, "ADown", s.ad8...);
    v.elan(9, "RepNCSPELAN4", s.e9...);
    v.c2(10, "SPPELAN", s.spp_c2...);
    v.arg(10, 1, s.spp_c3...);
    v.c2(11, "PSA", s.psa...);
    v.elan(14, "RepNCSPELAN4", s.e14...);
    v.elan(17, "RepNCSPELAN4B", s.e17...);
    v.c2(18, "ADown", s.ad18...);
    v.elan(20, "RepNCSPELAN4B", s.e20...);
    v.c2(21, "ADown", s.ad21...);
    v.elan(23, "RepNCSPELAN4B", s.e23...);
    v.cbl(24, s.cbl24...);
    v.cbl(25, s.cbl25...);
    v.cbl(26, s.cbl26...);
    v.c2(27, "Conv", s.conv27...);
    v.c2(28, "Conv", s.conv28...);
    v.elan(29, "RepNCSPELAN4", s.e29...);
    v.c2(30, "ADown", s.ad30...);
    v.elan(32, "RepNCSPELAN4", s.e32...);
    v.c2(33, "ADown", s.ad33...);
    v.elan(35, "RepNCSPELAN4", s.e35...);
    v.c2(36, "ADown", s.ad36...);
    v.elan(38, "RepNCSPELAN4", s.e38...);
    v.elan(39, "RepNCSPELAN4", s.e39...);
    v.c2(41, "DWConv", s.dw41...);
    v.c2(42, "Conv", s.conv42...);
    v.elan(43, "RepNCSPELAN4", s.e43...);
    v.c2(45, "DWConv", s.dw45...);
    v.c2(46, "Conv", s.conv46...);
    v.elan(47, "RepNCSPELAN4", s.e47...);
    v.c2(49, "DWConv", s.dw49...);
    v.c2(50, "Conv", s.conv50...);
    v.elan(51, "RepNCSPELAN4", s.e51...);
    v.c2(53, "DWConv", s.dw53...);
    v.c2(54, "Conv", s.conv54...);
  }
};

namespace detail {
constexpr int make_div8(double x) {
  const double q = x / 8.0;
  int c = int(q);
  if (double(c) < q) ++c;
  return c * 8;
}
}  // namespace detail

/// gyolo.yaml with upstream's parse_model scaling applied: every module's c2 (first yaml argument)
/// becomes make_divisible(c2 * width, 8), as do the panoptic head's mask count; the ELAN inner
/// widths c3/c4 and SPPELAN's c3 are not scaled (upstream does not scale them).
constexpr variant_config scaled_gyolo(double width, int nc = 80) {
  struct scaler {
    double w;
    constexpr int s(int c) const { return detail::make_div8(c * w); }
    constexpr void c2(int, const char*, int& c) const { c = s(c); }
    constexpr void arg(int, int, int&) const {}
    constexpr void elan(int, const char*, elan_args& e) const { e.c2 = s(e.c2); }
    constexpr void cbl(int, cbl_args&) const {}  // parse_model does not scale CBLinear's c2s
  } sc{width};
  variant_config v;
  v.nc = nc;
  v.nm = sc.s(32);
  variant_config::fields(sc, v);
  return v;
}

/// The released GYOLO (`gyolo.pt`, models/caption/gyolo.yaml).
struct gyolo_c {
  static constexpr const char* name = "gyolo";
  static constexpr variant_config value = scaled_gyolo(1.0);
};

/// A tiny variant used by the committed parity fixtures (weights_tools/make_fixtures.py --variant
/// tiny): gyolo.yaml's channel numbers divided by 8, except SPPELAN/PSA (256) so that PSA keeps
/// two attention heads. Same code paths as GYOLO, small tensors.
struct gyolo_tiny {
  static constexpr const char* name = "gyolo-tiny";
  static constexpr variant_config value = [] {
    variant_config v;
    v.conv1 = 8; v.conv2 = 16;
    v.e3 = {32, 16, 8, 1}; v.ad4 = 32; v.e5 = {64, 32, 16, 1}; v.ad6 = 64; v.e7 = {64, 64, 32, 1};
    v.ad8 = 64; v.e9 = {64, 64, 32, 1}; v.spp_c2 = 256; v.spp_c3 = 128; v.psa = 256;
    v.e14 = {64, 64, 32, 1}; v.e17 = {32, 32, 16, 1}; v.ad18 = 32; v.e20 = {64, 64, 32, 1}; v.ad21 = 64;
    v.e23 = {64, 64, 32, 1}; v.e43 = {32, 32, 16, 2}; v.dw45 = 32; v.conv46 = 32; v.e51 = {32, 32, 16, 2};
    v.dw53 = 32; v.conv54 = 32;
    v.cbl24 = {1, {32, 0, 0}}; v.cbl25 = {2, {32, 64, 0}}; v.cbl26 = {3, {32, 64, 64}};
    v.conv27 = 8; v.conv28 = 16; v.e29 = {32, 16, 8, 1}; v.ad30 = 32; v.e32 = {64, 32, 16, 1}; v.ad33 = 64;
    v.e35 = {64, 64, 32, 1}; v.ad36 = 64; v.e38 = {64, 64, 32, 1}; v.e39 = {64, 32, 16, 2}; v.dw41 = 32; v.conv42 = 32;
    v.e47 = {64, 32, 16, 2}; v.dw49 = 32; v.conv50 = 32;
    return v;
  }();
};

/// The small built-in variant of `gyolo train --variant nano` (tiny's layer widths), for nc classes
/// and sem_nc stuff channels.
constexpr variant_config nano_variant(int nc, int sem_nc) {
  variant_config v = gyolo_tiny::value;
  v.nc = nc;
  v.sem_nc = sem_nc;
  return v;
}

/// The demo model that ships with gyolo (models/gyolo-shapes.gguf): nano trained by `gyolo train` on
/// generated scenes (`gyolo datagen`: 5 shape classes, 7 stuff classes). See docs/training.md.
struct gyolo_shapes {
  static constexpr const char* name = "gyolo-shapes";
  static constexpr variant_config value = nano_variant(5, 7);
};

template <class V>
concept variant = requires {
  { V::name } -> std::convertible_to<const char*>;
  { V::value } -> std::convertible_to<variant_config>;
};

}  // namespace gyolo
