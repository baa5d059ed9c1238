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
  elan_args e43{256, 256, 128, 2};                   // 43
  int dw45 = 256, conv46 = 256;                      // 45, 46
  elan_args e51{256, 256, 128, 2};                   // 51
  int dw53 = 256, conv54 = 256;                      // 53, 54

  constexpr bool operator==(const variant_config&) const = default;
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
  variant_config v;
  auto s = [&](int c) { return detail::make_div8(c * width); };
  v.nc = nc;
  v.nm = s(32);
  v.conv1 = s(64); v.conv2 = s(128);
  for (auto* e : {&v.e3, &v.e5, &v.e7, &v.e9, &v.e14, &v.e17, &v.e20, &v.e23, &v.e43, &v.e51}) e->c2 = s(e->c2);
  v.ad4 = s(256); v.ad6 = s(512); v.ad8 = s(512); v.ad18 = s(256); v.ad21 = s(512);
  v.spp_c2 = s(512); v.psa = s(512);
  v.dw45 = s(256); v.conv46 = s(256); v.dw53 = s(256); v.conv54 = s(256);
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
    return v;
  }();
};

template <class V>
concept variant = requires {
  { V::name } -> std::convertible_to<const char*>;
  { V::value } -> std::convertible_to<variant_config>;
};

}  // namespace gyolo
