// tkernels<cuda>: the caption head's kernels on the context's stream (bodies in
// gyolo/cuda/bodies.cuh, which the host tests run too). Index lists come from the host and are
// copied into stream-ordered scratch (cudaMemcpyAsync from pageable memory copies the host data to
// a staging buffer before it returns, so the caller may reuse it at once). Only the calls whose
// results are host data wait for the stream: region_scores, semantic_argmax, download_rows.
#include <cuda_runtime.h>

#include <algorithm>
#include <string>
#include <vector>

#include "gyolo/cuda/backend.hpp"
#include "gyolo/cuda/bodies.cuh"
#include "launch.cuh"

namespace gyolo {
namespace {
namespace cb = cuda_bodies;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw cuda_error(std::string(what) + ": " + cudaGetErrorString(e));
}
using cuda_launch::dv;
using cuda_launch::launch;
using cuda_launch::stream_of;

/// Stream-ordered device scratch on the context's stream (cuda_detail::scratch).
template <class T>
struct scratch : cuda_detail::scratch<T> {
  scratch(context<cuda>& ctx, std::size_t n) : cuda_detail::scratch<T>(ctx.stream(), n) {}
  scratch(context<cuda>& ctx, const T* host, std::size_t n) : cuda_detail::scratch<T>(ctx.stream(), host, n) {}
};

cb::mv M(mview m) { return {m.data, m.rows, m.cols, m.ld}; }
cb::cmv C(cmview m) { return {m.data, m.rows, m.cols, m.ld}; }

}  // namespace

void tkernels<cuda>::linear(ctx_t& ctx, cmview x, const linear_params& p, mview y, act a) {
  GYOLO_CHECK(x.cols == p.in && y.cols == p.out && y.rows == x.rows && p.w, "linear (cuda): shape mismatch");
  launch(ctx, cb::linear{C(x), p.w, p.b, M(y), int(a)}, std::int64_t(y.rows) * y.cols, "linear");
}

void tkernels<cuda>::add_layernorm(ctx_t& ctx, cmview x, cmview r, const float* gamma, const float* beta, float eps, mview y) {
  GYOLO_CHECK(y.rows == x.rows && y.cols == x.cols && (!r.data || (r.rows == x.rows && r.cols == x.cols)), "add_layernorm (cuda): shape mismatch");
  launch(ctx, cb::add_layernorm{C(x), C(r), gamma, beta, eps, M(y)}, y.rows, "add_layernorm", 64);
}

void tkernels<cuda>::attention(ctx_t& ctx, cmview q, cmview k, cmview v, int heads, mview y, const unsigned char* key_masked) {
  const int D = q.cols, nk = k.rows;
  GYOLO_CHECK(heads > 0 && D % heads == 0 && k.cols == D && v.cols == D && v.rows == nk && y.cols == D && y.rows == q.rows,
              "attention (cuda): shape mismatch");
  GYOLO_CHECK(D / heads <= cb::attention::max_dk, "attention (cuda): head width " + std::to_string(D / heads) + " above " +
                                                     std::to_string(cb::attention::max_dk));
  cb::attention f{C(q), C(k), C(v), heads, attention_divisor(D / heads), M(y), key_masked != nullptr, {0ull, 0ull}};
  if (key_masked) {
    GYOLO_CHECK(nk <= max_masked_keys, "attention (cuda): a key mask covers at most " + std::to_string(max_masked_keys) + " keys, got " +
                                           std::to_string(nk));
    for (int j = 0; j < nk; ++j)
      if (key_masked[j]) f.mask[j >> 6] |= 1ull << (j & 63);
  }
  launch(ctx, f, std::int64_t(q.rows) * heads, "attention", 64);
}

void tkernels<cuda>::gate_mix(ctx_t& ctx, cmview e1, cmview a1, cmview e2, cmview a2, mview y) {
  launch(ctx, cb::gate_mix{C(e1), C(a1), C(e2), C(a2), M(y)}, std::int64_t(y.rows) * y.cols, "gate_mix");
}

void tkernels<cuda>::log_softmax(ctx_t& ctx, cmview x, mview y) {
  GYOLO_CHECK(x.rows == y.rows && x.cols == y.cols, "log_softmax (cuda): shape mismatch");
  launch(ctx, cb::log_softmax{C(x), M(y)}, y.rows, "log_softmax", 32);
}

void tkernels<cuda>::copy(ctx_t& ctx, cmview x, mview y) {
  GYOLO_CHECK(x.rows == y.rows && x.cols == y.cols, "copy (cuda): shape mismatch");
  if (!y.rows || !y.cols) return;
  check(cudaMemcpy2DAsync(y.data, std::size_t(y.ld) * sizeof(float), x.data, std::size_t(x.ld) * sizeof(float),
                          std::size_t(y.cols) * sizeof(float), std::size_t(y.rows), cudaMemcpyDeviceToDevice, stream_of(ctx)),
        "cudaMemcpy2DAsync (copy)");
}

void tkernels<cuda>::fill(ctx_t& ctx, mview y, float v) { launch(ctx, cb::fill{M(y), v}, std::int64_t(y.rows) * y.cols, "fill"); }

void tkernels<cuda>::embed(ctx_t& ctx, const float* table, std::span<const std::int64_t> ids, const float* pos, mview y) {
  GYOLO_CHECK(std::int64_t(ids.size()) == y.rows, "embed (cuda): one id per row");
  const scratch<std::int64_t> d_ids(ctx, ids.data(), ids.size());
  launch(ctx, cb::embed{table, d_ids.get(), pos, M(y)}, std::int64_t(y.rows) * y.cols, "embed");
}

void tkernels<cuda>::gather_columns(ctx_t& ctx, cdview x, int img, std::span<const std::int64_t> at, dview g) {
  const int m = int(at.size());
  GYOLO_CHECK(g.n == 1 && g.c == x.c && std::int64_t(g.h) * g.w == m, "gather_columns (cuda): shape mismatch");
  const scratch<std::int64_t> d_at(ctx, at.data(), at.size());
  launch(ctx, cb::gather_columns{dv(x), img, d_at.get(), m, g.data}, std::int64_t(x.c) * m, "gather_columns");
}

void tkernels<cuda>::columns_to_rows(ctx_t& ctx, cdview y, std::span<const int> rows, int row0, mview out) {
  const std::int64_t m = std::int64_t(y.h) * y.w;
  GYOLO_CHECK(y.n == 1 && y.c == out.cols && (rows.empty() || std::int64_t(rows.size()) == m), "columns_to_rows (cuda): shape mismatch");
  const scratch<int> d_rows(ctx, rows.data(), rows.size());
  launch(ctx, cb::columns_to_rows{y.data, m, rows.empty() ? nullptr : d_rows.get(), row0, M(out)}, std::int64_t(y.c) * m, "columns_to_rows");
}

std::vector<float> tkernels<cuda>::region_scores(ctx_t& ctx, const std::array<cdview, 3>& d3, int img, int reg_max) {
  cb::region_score f{};
  std::int64_t a = 0;
  for (int l = 0; l < 3; ++l) {
    GYOLO_CHECK(d3[std::size_t(l)].c > 4 * reg_max, "Grit: head map has no class channels");
    f.lv[l] = dv(d3[std::size_t(l)]);
    f.start[l] = a;
    a += std::int64_t(d3[std::size_t(l)].h) * d3[std::size_t(l)].w;
  }
  f.start[3] = a;
  f.reg_max = reg_max;
  f.img = img;
  const scratch<float> d_score(ctx, std::size_t(a));
  f.score = d_score.get();
  launch(ctx, f, a, "region_score");
  std::vector<float> score(static_cast<std::size_t>(a));
  if (a) cudart::copy_d2h(score.data(), d_score.get(), std::size_t(a) * sizeof(float), ctx.stream());
  ctx.synchronize();
  return score;
}

std::vector<std::int64_t> tkernels<cuda>::semantic_argmax(ctx_t& ctx, cdview sem, int img) {
  const scratch<std::int64_t> d_pos(ctx, std::size_t(sem.c));
  launch(ctx, cb::semantic_argmax{dv(sem), img, d_pos.get()}, sem.c, "semantic_argmax", 32);
  std::vector<std::int64_t> pos(static_cast<std::size_t>(sem.c));
  if (sem.c) cudart::copy_d2h(pos.data(), d_pos.get(), pos.size() * sizeof(std::int64_t), ctx.stream());
  ctx.synchronize();
  return pos;
}

void tkernels<cuda>::download_rows(ctx_t& ctx, cmview x, std::span<const int> rows, float* dst, std::int64_t ld) {
  std::vector<float> h(std::size_t(x.rows) * std::size_t(x.cols));
  if (!h.empty())
    check(cudaMemcpy2DAsync(h.data(), std::size_t(x.cols) * sizeof(float), x.data, std::size_t(x.ld) * sizeof(float),
                            std::size_t(x.cols) * sizeof(float), std::size_t(x.rows), cudaMemcpyDeviceToHost, stream_of(ctx)),
          "cudaMemcpy2DAsync (log-probs to the host)");
  ctx.synchronize();
  for (int j = 0; j < x.rows; ++j) std::copy_n(h.data() + std::size_t(j) * x.cols, x.cols, dst + std::int64_t(rows[std::size_t(j)]) * ld);
}

}  // namespace gyolo

namespace gyolo::cuda_detail {
/// The semantic-map body over n output pixels (post_cuda.cpp prepares it).
void launch_semantic_map(context<cuda>& ctx, const cuda_bodies::semantic_map& f, std::int64_t n) {
  launch(ctx, f, n, "semantic_map", 128);
}
}  // namespace gyolo::cuda_detail
