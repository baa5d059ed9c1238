// nn.Linear forward and backward on Eigen's GEMMs (train/linear_cpu.hpp), compiled once in gyolo's
// library.
#ifndef EIGEN_DONT_PARALLELIZE
#define EIGEN_DONT_PARALLELIZE
#endif
#include <Eigen/Core>
#include <cstdint>

#include "gyolo/train/linear_cpu.hpp"

namespace gyolo::train::fast {

namespace linear_detail {
using row_major = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using cmap = Eigen::Map<const row_major, 0, Eigen::OuterStride<>>;
using mmap = Eigen::Map<row_major, 0, Eigen::OuterStride<>>;
inline cmap view(const mat_view<const float>& m) { return cmap(m.data, m.rows, m.cols, Eigen::OuterStride<>(m.ld)); }
inline mmap view(const mat_view<float>& m) { return mmap(m.data, m.rows, m.cols, Eigen::OuterStride<>(m.ld)); }
}  // namespace linear_detail

void linear(mat_view<const float> x, const float* w, const float* b, mat_view<float> y) {
  using namespace linear_detail;
  const int M = x.rows, K = x.cols, N = y.cols;
  GYOLO_CHECK(y.rows == M, "train::fast::linear: shape mismatch");
  auto Y = view(y);
  const cmap W(w, N, K, Eigen::OuterStride<>(K));
  Y.noalias() = view(x) * W.transpose();
  if (b) Y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(b, N);
}

void linear_backward(mat_view<const float> x, const float* w, mat_view<const float> dy, mat_view<float> dx, float* dw, float* db) {
  using namespace linear_detail;
  const int M = x.rows, K = x.cols, N = dy.cols;
  GYOLO_CHECK(dy.rows == M, "train::fast::linear_backward: shape mismatch");
  const auto DY = view(dy);
  if (dx.data) {
    GYOLO_CHECK(dx.rows == M && dx.cols == K, "train::fast::linear_backward: dx shape mismatch");
    view(dx).noalias() += DY * cmap(w, N, K, Eigen::OuterStride<>(K));
  }
  if (dw) mmap(dw, N, K, Eigen::OuterStride<>(K)).noalias() += DY.transpose() * view(x);
  if (db) Eigen::Map<Eigen::RowVectorXf>(db, N) += DY.colwise().sum();
}

}  // namespace gyolo::train::fast
