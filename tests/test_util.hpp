// Helpers shared by the test files: fixture loading (.npy arrays, GGUF tensor files) and the
// closeness checks. Each check keeps the exact semantics of the copies it replaces; variants with
// different semantics have different names:
//   require_view_close   shapes equal and max|ours - ref| <= tol * max|ref| (REQUIRE: stops the test)
//   check_close          max|a - b| <= rel * max|b| + floor, a NaN in `a` fails (CHECK: goes on)
//   require_values_close max|a - b| <= tol * max(max|b|, floor), NaN fails (REQUIRE)
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gyolo/core/tensor.hpp"
#include "gyolo/io/gguf.hpp"
#include "gyolo/io/npy.hpp"

namespace gyolo::test {

/// A tensor of uniform random values in [lo, hi) drawn from g.
inline tensor<float> rnd(shape4 s, std::mt19937& g, float lo = -1.f, float hi = 1.f) {
  tensor<float> t(s);
  std::uniform_real_distribution<float> d(lo, hi);
  for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = d(g);
  return t;
}
/// n uniform random values in [-1, 1) drawn from g.
inline std::vector<float> rndv(std::size_t n, std::mt19937& g) {
  std::vector<float> v(n);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  for (auto& x : v) x = d(g);
  return v;
}

/// An .npy fixture as a float tensor: 4-d as is, 3-d [B, C, A] -> [B, C, 1, A], 2-d [H, W] ->
/// [1, 1, H, W], 1-d [N] -> [1, 1, 1, N].
inline tensor<float> load4(const std::string& path) {
  auto a = npy::load(path);
  auto v = a.as<float>();
  shape4 s{1, 1, 1, 1};
  const auto& sh = a.shape;
  REQUIRE(!sh.empty());
  REQUIRE(sh.size() <= 4);
  if (sh.size() == 4) s = {int(sh[0]), int(sh[1]), int(sh[2]), int(sh[3])};
  if (sh.size() == 3) s = {int(sh[0]), int(sh[1]), 1, int(sh[2])};
  if (sh.size() == 2) s = {1, 1, int(sh[0]), int(sh[1])};
  if (sh.size() == 1) s = {1, 1, 1, int(sh[0])};
  tensor<float> t(s);
  REQUIRE(std::int64_t(v.size()) == t.numel());
  std::copy(v.begin(), v.end(), t.data());
  return t;
}

/// Tensors of a GGUF fixture by name (fp32 values).
struct tensor_file {
  gguf::file f;
  explicit tensor_file(const std::string& path) : f(path) {}
  bool has(const std::string& n) const { return f.find(n) != nullptr; }
  std::vector<float> get(const std::string& n) const {
    const auto* t = f.find(n);
    INFO(n);
    REQUIRE(t != nullptr);
    return f.read_f32(*t);
  }
};

/// Copies a view's values to a contiguous vector (n, c, plane order).
inline std::vector<float> flat(cview<float> v) {
  std::vector<float> r;
  r.reserve(std::size_t(v.numel()));
  for (int n = 0; n < v.n; ++n)
    for (int c = 0; c < v.c; ++c) r.insert(r.end(), v.channel(n, c), v.channel(n, c) + v.plane());
  return r;
}

/// max |x| over a view.
inline double max_abs(cview<float> x) {
  double m = 0;
  for (int n = 0; n < x.n; ++n)
    for (int c = 0; c < x.c; ++c)
      for (std::int64_t i = 0; i < x.plane(); ++i) m = std::max(m, double(std::abs(x.channel(n, c)[i])));
  return m;
}

/// REQUIREs equal shapes, max|ref| > 0 and max|ours - ref| <= tol * max|ref|.
inline void require_view_close(cview<float> ours, const tensor<float>& ref, double tol, const std::string& what) {
  INFO(what << ": ours " << ours.shape().str() << " ref " << ref.shape().str());
  REQUIRE(ours.shape() == ref.shape());
  double md = 0;
  auto r = ref.cv();
  for (int n = 0; n < r.n; ++n)
    for (int c = 0; c < r.c; ++c)
      for (std::int64_t i = 0; i < r.plane(); ++i)
        md = std::max(md, double(std::abs(ours.channel(n, c)[i] - r.channel(n, c)[i])));
  const double mr = max_abs(r);
  INFO(what << ": max|diff| " << md << " max|ref| " << mr << " ratio " << md / mr);
  REQUIRE(mr > 0);
  REQUIRE(md <= tol * mr);
}

struct close_stats {
  double max_err = 0, max_ref = 0;
};

/// CHECKs max|a - b| <= rel * max|b| + floor over n values (a NaN in `a` counts as an infinite
/// error). Returns the error figures.
inline close_stats check_close(const float* a, const float* b, std::int64_t n, double rel, double floor, const std::string& what) {
  close_stats s;
  for (std::int64_t i = 0; i < n; ++i) {
    s.max_err = std::max(s.max_err, double(std::abs(a[i] - b[i])));
    if (std::isnan(a[i])) s.max_err = std::numeric_limits<double>::infinity();
    s.max_ref = std::max(s.max_ref, double(std::abs(b[i])));
  }
  INFO(what << ": max|diff| " << s.max_err << ", max|ref| " << s.max_ref);
  CHECK(s.max_err <= rel * s.max_ref + floor);
  return s;
}

/// max |v|.
inline double max_abs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::abs(x));
  return m;
}

/// REQUIREs max_i |a_i - b_i| <= tol * max(max|b|, floor) (a NaN difference fails).
inline void require_values_close(const std::vector<double>& a, const std::vector<double>& b, double tol, const std::string& what,
                                 double floor = 1e-3) {
  REQUIRE(a.size() == b.size());
  double md = 0;
  std::size_t at = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::abs(a[i] - b[i]) > md || std::isnan(a[i] - b[i])) md = std::abs(a[i] - b[i]), at = i;
  const double scale = std::max(max_abs(b), floor);
  INFO(what << ": max|diff| " << md << " at " << at << " (" << (a.empty() ? 0 : a[at]) << " vs " << (b.empty() ? 0 : b[at])
            << "), max|ref| " << max_abs(b));
  REQUIRE(md <= tol * scale);
}

}  // namespace gyolo::test
