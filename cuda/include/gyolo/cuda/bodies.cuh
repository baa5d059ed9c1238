// The per-element bodies of the CUDA kernels: each is a functor whose operator()(i) computes output
// element i. cuda/src/kernels.cu launches them over a grid; the host tests (tests/test_cuda_bodies.cpp)
// run the same bodies in a plain loop (host_for) and compare them with kernels<reference>, so the
// kernels' index arithmetic, padding, strides, slices and epilogues are checked in CI without a GPU.
// Plain C++ when not compiled by nvcc (GYOLO_HD is then empty).
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define GYOLO_HD __host__ __device__
#else
#define GYOLO_HD
#endif

namespace gyolo::cuda_bodies {

/// A strided NCHW view as the kernels see it (a channel slice of a larger tensor: batch stride).
struct tv {
  float* p = nullptr;
  int n = 0, c = 0, h = 0, w = 0;
  std::int64_t bs = 0;
  GYOLO_HD float& at(int i, int ch, int y, int x) const { return p[i * bs + (std::int64_t(ch) * h + y) * w + x]; }
  GYOLO_HD std::int64_t numel() const { return std::int64_t(n) * c * h * w; }
};
struct ctv {
  const float* p = nullptr;
  int n = 0, c = 0, h = 0, w = 0;
  std::int64_t bs = 0;
  GYOLO_HD float at(int i, int ch, int y, int x) const { return p[i * bs + (std::int64_t(ch) * h + y) * w + x]; }
};

/// Output index i of an [n, c, h, w] view -> (n, c, y, x).
struct idx4 {
  int n, c, y, x;
};
GYOLO_HD inline idx4 split(std::int64_t i, int c, int h, int w) {
  idx4 r;
  r.x = int(i % w);
  i /= w;
  r.y = int(i % h);
  i /= h;
  r.c = int(i % c);
  r.n = int(i / c);
  return r;
}

/// Activation codes as gyolo::act (none, silu, relu, sigmoid).
GYOLO_HD inline float activate(int a, float v) {
  switch (a) {
    case 1: return v / (1.0f + expf(-v));
    case 2: return v > 0.f ? v : 0.f;
    case 3: return 1.0f / (1.0f + expf(-v));
    default: return v;
  }
}

struct conv_params {
  int cin = 0, cout = 0, k = 1, stride = 1, pad = 0, groups = 1, act = 0;
};

/// Direct convolution, one output element per call: y = act(sum + b) [+ residual]. The reference
/// for the tiled kernel, and the kernel for shapes it does not take.
struct conv_direct {
  ctv x;
  const float* w;
  const float* b;
  tv y;
  ctv res;  // p == nullptr: none
  conv_params d;
  GYOLO_HD void operator()(std::int64_t i) const {
    const idx4 o = split(i, y.c, y.h, y.w);
    const int cin_g = d.cin / d.groups, cout_g = d.cout / d.groups, g = o.c / cout_g;
    float acc = b ? b[o.c] : 0.f;
    const float* wr = w + std::int64_t(o.c) * cin_g * d.k * d.k;
    for (int ci = 0; ci < cin_g; ++ci)
      for (int ky = 0; ky < d.k; ++ky) {
        const int iy = o.y * d.stride - d.pad + ky;
        if (iy < 0 || iy >= x.h) continue;
        for (int kx = 0; kx < d.k; ++kx) {
          const int ix = o.x * d.stride - d.pad + kx;
          if (ix < 0 || ix >= x.w) continue;
          acc += wr[(ci * d.k + ky) * d.k + kx] * x.at(o.n, g * cin_g + ci, iy, ix);
        }
      }
    float v = activate(d.act, acc);
    if (res.p) v += res.at(o.n, o.c, o.y, o.x);
    y.at(o.n, o.c, o.y, o.x) = v;
  }
};

/// The convolution's epilogue on an accumulated value (bias already added): the tiled kernel's.
GYOLO_HD inline float conv_epilogue(float acc, int act, const ctv& res, int n, int c, int yy, int xx) {
  float v = activate(act, acc);
  if (res.p) v += res.at(n, c, yy, xx);
  return v;
}

/// Element (row r = ci*k*k + ky*k + kx, column col = oy*ow + ox) of image n's im2col matrix for
/// group g: what the tiled convolution loads into shared memory (0 in the padding).
GYOLO_HD inline float im2col_at(const ctv& x, const conv_params& d, int n, int g, int r, int col, int ow) {
  const int kk = d.k * d.k, ci = r / kk, t = r % kk, ky = t / d.k, kx = t % d.k;
  const int oy = col / ow, ox = col % ow;
  const int iy = oy * d.stride - d.pad + ky, ix = ox * d.stride - d.pad + kx;
  if (iy < 0 || iy >= x.h || ix < 0 || ix >= x.w) return 0.f;
  return x.at(n, g * (d.cin / d.groups) + ci, iy, ix);
}

/// What the tiled convolutions share: the implicit GEMM per image and group
/// Y[cout_g, P] = W[cout_g, K] . col(X)[K, P] with K = cin_g * k * k and P = oh * ow (the im2col
/// matrix is never built: tiles are gathered from x), its grid of BM x BN output tiles, the guarded
/// element loads of a K-slice of BK, and the epilogue.
template <int BM_, int BN_, int BK_>
struct conv_gemm {
  static constexpr int BM = BM_, BN = BN_, BK = BK_;
  ctv x;
  const float* w;
  const float* b;
  tv y;
  ctv res;
  conv_params d;

  GYOLO_HD int cin_g() const { return d.cin / d.groups; }
  GYOLO_HD int cout_g() const { return d.cout / d.groups; }
  GYOLO_HD int K() const { return cin_g() * d.k * d.k; }
  GYOLO_HD int P() const { return y.h * y.w; }
  /// The grid: (P tiles, cout_g tiles, images x groups).
  GYOLO_HD int grid_x() const { return (P() + BN - 1) / BN; }
  GYOLO_HD int grid_y() const { return (cout_g() + BM - 1) / BM; }
  GYOLO_HD int grid_z() const { return y.n * d.groups; }

  /// Thread tid's share of the K-slice [k0, k0 + BK) of block (bx, by, bz): put_a(mm, kk, W element)
  /// and put_b(kk, pp, col(X) element), 0 outside the matrices.
  template <class PutA, class PutB>
  GYOLO_HD void load_slice(int tid, int threads, int k0, int bx, int by, int bz, PutA put_a, PutB put_b) const {
    const int n = bz / d.groups, g = bz % d.groups, m0 = by * BM, p0 = bx * BN, Kk = K(), cg = cout_g(), Pp = P();
    const float* wg = w + std::int64_t(g) * cg * Kk;
    for (int e = tid; e < BM * BK; e += threads) {
      const int mm = e / BK, kk = e % BK, m = m0 + mm, kg = k0 + kk;
      put_a(mm, kk, m < cg && kg < Kk ? wg[std::int64_t(m) * Kk + kg] : 0.f);
    }
    for (int e = tid; e < BK * BN; e += threads) {
      const int kk = e / BN, pp = e % BN, kg = k0 + kk, p = p0 + pp;
      put_b(kk, pp, kg < Kk && p < Pp ? im2col_at(x, d, n, g, kg, p, y.w) : 0.f);
    }
  }
  /// Output (by * BM + mm, bx * BN + pp) of block (bx, by, bz) from its accumulated sum: bias,
  /// activation, residual (nothing outside the matrix).
  GYOLO_HD void put(int bx, int by, int bz, int mm, int pp, float acc) const {
    const int n = bz / d.groups, g = bz % d.groups, cg = cout_g(), m = by * BM + mm, p = bx * BN + pp;
    if (m >= cg || p >= P()) return;
    const int co = g * cg + m, oy = p / y.w, ox = p % y.w;
    y.at(n, co, oy, ox) = conv_epilogue(acc + (b ? b[co] : 0.f), d.act, res, n, co, oy, ox);
  }
};

/// The tiled implicit-GEMM convolution (SIMT fp32). A block computes BM x BN outputs with `threads`
/// threads of TM x TN each; for each K-slice of BK it loads a tile of W and of col(X) into shared
/// memory (load), all threads wait, each multiplies its part (compute), all wait again; then each
/// writes its outputs with the epilogue (store). The phases are functions of the thread index, so
/// host_tiled below runs the same code block by block, thread by thread, phase by phase, and the
/// host tests check the kernel's shared-memory staging too.
struct conv_tile : conv_gemm<64, 64, 16> {
  static constexpr int TM = 4, TN = 4, threads = (BM / TM) * (BN / TN);
  struct smem {
    float A[BK][BM];
    float B[BK][BN];
  };

  /// Thread tid's share of the K-slice [k0, k0 + BK) of block (bx, by, bz) into s.
  GYOLO_HD void load(int tid, int k0, int bx, int by, int bz, smem& s) const {
    load_slice(
        tid, threads, k0, bx, by, bz, [&](int mm, int kk, float v) { s.A[kk][mm] = v; }, [&](int kk, int pp, float v) { s.B[kk][pp] = v; });
  }
  /// Thread tid's TM x TN products over the slice in s.
  GYOLO_HD void compute(int tid, const smem& s, float (&acc)[TM][TN]) const {
    const int tr = tid / (BN / TN), tc = tid % (BN / TN);
    for (int kk = 0; kk < BK; ++kk) {
      float a[TM], bb[TN];
      for (int i = 0; i < TM; ++i) a[i] = s.A[kk][tr * TM + i];
      for (int j = 0; j < TN; ++j) bb[j] = s.B[kk][tc * TN + j];
      for (int i = 0; i < TM; ++i)
        for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * bb[j];
    }
  }
  /// Thread tid's outputs: bias, activation, residual.
  GYOLO_HD void store(int tid, int bx, int by, int bz, const float (&acc)[TM][TN]) const {
    const int tr = tid / (BN / TN), tc = tid % (BN / TN);
    for (int i = 0; i < TM; ++i)
      for (int j = 0; j < TN; ++j) put(bx, by, bz, tr * TM + i, tc * TN + j, acc[i][j]);
  }
};

/// The tensor-core convolution (context<cuda>::set_precision(cuda_precision::fp16)): the same implicit
/// GEMM, with the tiles rounded to half precision as they are staged (activations and weights stay
/// fp32 in memory) and multiplied by the tensor cores with fp32 accumulation (WMMA 16x16x16). A block
/// of 4 warps computes 64 x 64 outputs, each warp 32 x 32 (2 x 2 fragments); the accumulators go
/// through shared memory (C) to the same epilogue as the fp32 kernel. H is the staged type: __half on
/// the device; the host tests use float with mma_host in place of the tensor cores, which checks the
/// staging, the tile layout and the epilogue.
template <class H>
struct conv_tile_tc : conv_gemm<64, 64, 16> {
  static constexpr int warps = 4, threads = 32 * warps;
  static constexpr int lda = BK + 8, ldb = BN + 8, ldc = BN + 4;  // padded rows (WMMA: multiples of 8 / 4)
  struct smem {
    alignas(32) H A[BM][lda];  // W tile, row-major [m][k]
    alignas(32) H B[BK][ldb];  // col(X) tile, row-major [k][p]
    alignas(32) float C[BM][ldc];
  };

  /// Thread tid's share of the K-slice [k0, k0 + BK) of block (bx, by, bz), rounded to H.
  template <class Round>
  GYOLO_HD void load(int tid, int k0, int bx, int by, int bz, smem& s, Round round) const {
    load_slice(
        tid, threads, k0, bx, by, bz, [&](int mm, int kk, float v) { s.A[mm][kk] = round(v); },
        [&](int kk, int pp, float v) { s.B[kk][pp] = round(v); });
  }
  /// Thread tid's outputs from the accumulators in s.C: bias, activation, residual.
  GYOLO_HD void store(int tid, int bx, int by, int bz, const smem& s) const {
    for (int e = tid; e < BM * BN; e += threads) put(bx, by, bz, e / BN, e % BN, s.C[e / BN][e % BN]);
  }
  /// What the tensor cores do for warp `warp` over one staged slice, on the host: its 32 x 32
  /// part of C += A . B (C zeroed by the caller before the first slice).
  void mma_host(int warp, smem& s) const {
    const int wm = warp / 2, wn = warp % 2;
    for (int i = 0; i < 32; ++i)
      for (int j = 0; j < 32; ++j) {
        float acc = 0.f;
        for (int k = 0; k < BK; ++k) acc += float(s.A[wm * 32 + i][k]) * float(s.B[k][wn * 32 + j]);
        s.C[wm * 32 + i][wn * 32 + j] += acc;
      }
  }
};

/// Max pooling with implicit -inf padding (NaN propagates, as PyTorch).
struct maxpool {
  ctv x;
  tv y;
  int k, s, p;
  GYOLO_HD void operator()(std::int64_t i) const {
    const idx4 o = split(i, y.c, y.h, y.w);
    float m = -INFINITY;
    for (int ky = 0; ky < k; ++ky)
      for (int kx = 0; kx < k; ++kx) {
        const int iy = o.y * s - p + ky, ix = o.x * s - p + kx;
        if (iy < 0 || iy >= x.h || ix < 0 || ix >= x.w) continue;
        const float v = x.at(o.n, o.c, iy, ix);
        if (v > m || v != v) m = v;
      }
    y.at(o.n, o.c, o.y, o.x) = m;
  }
};

/// avg_pool2d(2, 1, 0).
struct avgpool2x2s1 {
  ctv x;
  tv y;
  GYOLO_HD void operator()(std::int64_t i) const {
    const idx4 o = split(i, y.c, y.h, y.w);
    y.at(o.n, o.c, o.y, o.x) =
        (x.at(o.n, o.c, o.y, o.x) + x.at(o.n, o.c, o.y, o.x + 1) + x.at(o.n, o.c, o.y + 1, o.x) + x.at(o.n, o.c, o.y + 1, o.x + 1)) / 4.0f;
  }
};

/// Nearest x2 upsampling.
struct upsample2x {
  ctv x;
  tv y;
  GYOLO_HD void operator()(std::int64_t i) const {
    const idx4 o = split(i, y.c, y.h, y.w);
    y.at(o.n, o.c, o.y, o.x) = x.at(o.n, o.c, o.y / 2, o.x / 2);
  }
};

/// y = x (strided views of the same shape).
struct copy {
  ctv x;
  tv y;
  GYOLO_HD void operator()(std::int64_t i) const {
    const idx4 o = split(i, y.c, y.h, y.w);
    y.at(o.n, o.c, o.y, o.x) = x.at(o.n, o.c, o.y, o.x);
  }
};

/// y = a + b.
struct add {
  ctv a, b;
  tv y;
  GYOLO_HD void operator()(std::int64_t i) const {
    const idx4 o = split(i, y.c, y.h, y.w);
    y.at(o.n, o.c, o.y, o.x) = a.at(o.n, o.c, o.y, o.x) + b.at(o.n, o.c, o.y, o.x);
  }
};

/// y[n, c, 0, a0 + p] = x[n, c, p] (a level's map into the anchor axis).
struct flatten_into {
  ctv x;
  tv y;
  std::int64_t a0;
  GYOLO_HD void operator()(std::int64_t i) const {
    const std::int64_t P = std::int64_t(x.h) * x.w;
    const std::int64_t p = i % P, nc = i / P;
    const int c = int(nc % x.c), n = int(nc / x.c);
    y.p[n * y.bs + std::int64_t(c) * y.w + a0 + p] = x.p[n * x.bs + std::int64_t(c) * P + p];
  }
};

/// PSA attention, one output element (n, head h, channel d of the head, query i) per call:
/// y = v @ softmax_j(scale * q^T k)^T, as kernels<reference>::psa_attention (two passes over the
/// keys: max, then the normalised weighted sum).
struct psa_attention {
  ctv qkv;
  tv y;
  int heads, kd, hd;
  float scale;
  GYOLO_HD void operator()(std::int64_t idx) const {
    const std::int64_t N = std::int64_t(qkv.h) * qkv.w;
    const int i = int(idx % N);
    std::int64_t r = idx / N;
    const int dd = int(r % hd);
    r /= hd;
    const int h = int(r % heads), n = int(r / heads);
    const int blk = 2 * kd + hd;
    const float* q = qkv.p + n * qkv.bs + std::int64_t(h) * blk * N;
    const float* k = q + std::int64_t(kd) * N;
    const float* v = k + std::int64_t(kd) * N + std::int64_t(dd) * N;
    float mx = -INFINITY;
    for (std::int64_t j = 0; j < N; ++j) {
      float s = 0.f;
      for (int c = 0; c < kd; ++c) s += q[c * N + i] * k[c * N + j];
      mx = fmaxf(mx, s * scale);
    }
    float sum = 0.f, o = 0.f;
    for (std::int64_t j = 0; j < N; ++j) {
      float s = 0.f;
      for (int c = 0; c < kd; ++c) s += q[c * N + i] * k[c * N + j];
      const float e = expf(s * scale - mx);
      sum += e;
      o += e * v[j];
    }
    y.p[n * y.bs + (std::int64_t(h) * hd + dd) * N + i] = o / sum;
  }
};

/// detect_decode for up to 4 levels, one anchor of one image per call (reg_max <= 16).
struct detect_decode {
  static constexpr int max_levels = 4, max_reg = 16;
  ctv lv[max_levels];
  float stride[max_levels];
  std::int64_t start[max_levels + 1];  // anchor offset of each level; start[nl] = A
  int nl, reg_max, nc;
  float dfl[max_reg];
  tv pred;  // [B, 4+nc, 1, A] (a channel slice)
  GYOLO_HD void operator()(std::int64_t idx) const {
    const std::int64_t A = start[nl];
    const std::int64_t a = idx % A;
    const int n = int(idx / A);
    int l = 0;
    while (l + 1 < nl && a >= start[l + 1]) ++l;
    const ctv& m = lv[l];
    const std::int64_t p = a - start[l];
    const int yy = int(p / m.w), xx = int(p % m.w);
    float dist[4];
    for (int side = 0; side < 4; ++side) {
      float mx = -INFINITY;
      for (int b = 0; b < reg_max; ++b) mx = fmaxf(mx, m.at(n, side * reg_max + b, yy, xx));
      float s = 0.f, e = 0.f;
      for (int b = 0; b < reg_max; ++b) {
        const float q = expf(m.at(n, side * reg_max + b, yy, xx) - mx);
        s += q;
        e += q * dfl[b];
      }
      dist[side] = e / s;
    }
    const float ax = xx + 0.5f, ay = yy + 0.5f, st = stride[l];
    const float x1 = ax - dist[0], y1 = ay - dist[1], x2 = ax + dist[2], y2 = ay + dist[3];
    float* o = pred.p + n * pred.bs + a;
    const std::int64_t cs = pred.w;  // channel stride of a [.., 1, A] view
    o[0] = (x1 + x2) / 2 * st;
    o[cs] = (y1 + y2) / 2 * st;
    o[2 * cs] = (x2 - x1) * st;
    o[3 * cs] = (y2 - y1) * st;
    for (int c = 0; c < nc; ++c) o[(4 + c) * cs] = 1.0f / (1.0f + expf(-m.at(n, 4 * reg_max + c, yy, xx)));
  }
};

// -------------------------------------------------------------------------------------------------
// The caption head (tkernels<cuda>): token-major matrices, one output element or one row per call.
// -------------------------------------------------------------------------------------------------

GYOLO_HD inline bool is_nan(float v) { return v != v; }

/// A row-major matrix: element (r, c) at p[r * ld + c].
struct mv {
  float* p = nullptr;
  int rows = 0, cols = 0;
  std::int64_t ld = 0;
  GYOLO_HD float& at(int r, int c) const { return p[std::int64_t(r) * ld + c]; }
};
struct cmv {
  const float* p = nullptr;
  int rows = 0, cols = 0;
  std::int64_t ld = 0;
  GYOLO_HD float at(int r, int c) const { return p[std::int64_t(r) * ld + c]; }
};

/// y = act(x W^T + b), W [out, in] row-major (torch.nn.Linear); one output element per call.
struct linear {
  cmv x;
  const float* w;
  const float* b;  // nullptr: no bias
  mv y;
  int act;
  GYOLO_HD void operator()(std::int64_t i) const {
    const int r = int(i / y.cols), o = int(i % y.cols);
    const float* wr = w + std::int64_t(o) * x.cols;
    const float* xr = x.p + std::int64_t(r) * x.ld;
    float acc = 0.f;
    for (int k = 0; k < x.cols; ++k) acc += xr[k] * wr[k];
    y.at(r, o) = activate(act, acc + (b ? b[o] : 0.f));
  }
};

/// y = LayerNorm(x + r) * gamma + beta (r.p may be null; biased variance); one row per call. y may
/// alias x (a row is read before it is written).
struct add_layernorm {
  cmv x, r;
  const float* g;
  const float* b;
  float eps;
  mv y;
  GYOLO_HD void operator()(std::int64_t i) const {
    const int row = int(i), d = x.cols;
    double m = 0, v = 0;
    for (int c = 0; c < d; ++c) m += x.at(row, c) + (r.p ? r.at(row, c) : 0.f);
    m /= d;
    for (int c = 0; c < d; ++c) {
      const double t = double(x.at(row, c) + (r.p ? r.at(row, c) : 0.f)) - m;
      v += t * t;
    }
    v /= d;
    const double rs = 1.0 / sqrt(v + double(eps));
    for (int c = 0; c < d; ++c) {
      const double t = double(x.at(row, c) + (r.p ? r.at(row, c) : 0.f));
      y.at(row, c) = float((t - m) * rs * g[c] + b[c]);
    }
  }
};

/// Multi-head attention, one (query, head) per call, with an online softmax (one pass over the
/// keys, the running maximum rescaling the sums). Keys whose bit is set in `mask` (nk <= 128 when
/// `masked`) are left out; a query with every key masked gets zeros.
struct attention {
  static constexpr int max_dk = 64;
  cmv q, k, v;
  int heads;
  float div;  // float(sqrt(d_k))
  mv y;
  bool masked;
  unsigned long long mask[2];
  GYOLO_HD void operator()(std::int64_t idx) const {
    const int i = int(idx / heads), h = int(idx % heads), dk = q.cols / heads, c0 = h * dk;
    float o[max_dk];
    for (int c = 0; c < dk; ++c) o[c] = 0.f;
    float mx = -INFINITY, sum = 0.f;
    for (int j = 0; j < k.rows; ++j) {
      if (masked && ((mask[j >> 6] >> (j & 63)) & 1ull)) continue;
      float s = 0.f;
      for (int c = 0; c < dk; ++c) s += q.at(i, c0 + c) * k.at(j, c0 + c);
      s /= div;
      if (s > mx) {  // rescale what was summed under the old maximum
        const float f = expf(mx - s);
        sum *= f;
        for (int c = 0; c < dk; ++c) o[c] *= f;
        mx = s;
      }
      const float e = expf(s - mx);
      sum += e;
      for (int c = 0; c < dk; ++c) o[c] += e * v.at(j, c0 + c);
    }
    for (int c = 0; c < dk; ++c) y.at(i, c0 + c) = sum > 0.f ? o[c] / sum : 0.f;
  }
};

/// y = (e1 * a1 + e2 * a2) / sqrt(2), one element per call.
struct gate_mix {
  cmv e1, a1, e2, a2;
  mv y;
  GYOLO_HD void operator()(std::int64_t i) const {
    const int r = int(i / y.cols), c = int(i % y.cols);
    y.at(r, c) = (e1.at(r, c) * a1.at(r, c) + e2.at(r, c) * a2.at(r, c)) / 1.41421356237309515f;
  }
};

/// Row-wise log_softmax, one row per call (y may alias x).
struct log_softmax {
  cmv x;
  mv y;
  GYOLO_HD void operator()(std::int64_t i) const {
    const int r = int(i);
    float mx = -INFINITY;
    for (int c = 0; c < x.cols; ++c) mx = fmaxf(mx, x.at(r, c));
    double sum = 0;
    for (int c = 0; c < x.cols; ++c) sum += exp(double(x.at(r, c)) - mx);
    const float ls = float(log(sum));
    for (int c = 0; c < x.cols; ++c) y.at(r, c) = x.at(r, c) - mx - ls;
  }
};

/// y = v, one element per call.
struct fill {
  mv y;
  float v;
  GYOLO_HD void operator()(std::int64_t i) const { y.at(int(i / y.cols), int(i % y.cols)) = v; }
};

/// Row j of y = table row ids[j] + pos, one element per call.
struct embed {
  const float* table;
  const std::int64_t* ids;
  const float* pos;
  mv y;
  GYOLO_HD void operator()(std::int64_t i) const {
    const int j = int(i / y.cols), c = int(i % y.cols);
    y.at(j, c) = table[ids[j] * y.cols + c] + pos[c];
  }
};

/// g [1, C, 1, m] = columns at[k] of image img of x, one element per call.
struct gather_columns {
  ctv x;
  int img;
  const std::int64_t* at;
  int m;
  float* g;
  GYOLO_HD void operator()(std::int64_t i) const {
    const int c = int(i / m), kk = int(i % m);
    g[i] = x.p[img * x.bs + std::int64_t(c) * x.h * x.w + at[kk]];
  }
};

/// out row (row0 + rows[k]) = column k of y [1, C, m] (rows null: k), one element per call.
struct columns_to_rows {
  const float* y;
  std::int64_t m;
  const int* rows;
  int row0;
  mv out;
  GYOLO_HD void operator()(std::int64_t i) const {
    const int c = int(i / m);
    const std::int64_t kk = i % m;
    out.at(row0 + (rows ? rows[kk] : int(kk)), c) = y[i];
  }
};

/// Grit's region score of one anchor of image img (levels in order): the maximum raw class logit,
/// torch.max's NaN rule (the first NaN wins). One anchor per call.
struct region_score {
  ctv lv[3];
  std::int64_t start[4];
  int reg_max, img;
  float* score;
  GYOLO_HD void operator()(std::int64_t a) const {
    int l = 0;
    while (l < 2 && a >= start[l + 1]) ++l;
    const ctv& m = lv[l];
    const std::int64_t p = a - start[l], hw = std::int64_t(m.h) * m.w;
    const float* base = m.p + img * m.bs + std::int64_t(4 * reg_max) * hw + p;
    float s = base[0];
    for (int c = 1; c < m.c - 4 * reg_max; ++c) {
      const float v = base[c * hw];
      if (!(v <= s) && !is_nan(s)) s = v;
    }
    score[a] = s;
  }
};

/// Per semantic channel of image img: the first flat position of the maximum (a NaN stops the
/// search: torch.max's rule). One channel per call.
struct semantic_argmax {
  ctv sem;
  int img;
  std::int64_t* pos;
  GYOLO_HD void operator()(std::int64_t c) const {
    const std::int64_t hw = std::int64_t(sem.h) * sem.w;
    const float* p = sem.p + img * sem.bs + c * hw;
    float m = p[0];
    std::int64_t k = 0;
    for (std::int64_t j = 0; j < hw; ++j)
      if (!(p[j] <= m)) {
        m = p[j];
        k = j;
        if (is_nan(m)) break;
      }
    pos[c] = k;
  }
};

// -------------------------------------------------------------------------------------------------
// The semantic map (post/semantic.hpp's arithmetic, bit for bit): logits bilinearly upsampled to the
// input (align_corners=False), optionally unletterboxed to the original size, arg-max over channels.
// -------------------------------------------------------------------------------------------------

/// A product that is never contracted into a neighbouring add (the CPU's formulas round it).
GYOLO_HD inline float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

/// One resize axis as post::interp_axis: taps i0/i1 and weights l0/l1 per output coordinate.
struct axis {
  const int* i0;
  const int* i1;
  const float* l0;
  const float* l1;
};

/// The semantic channel of one output pixel per call: the input-resolution map (unletterbox
/// off) or the original-resolution one. Ties go to the lower channel (a later channel wins only
/// when strictly greater).
struct semantic_map {
  const float* s;  // logits of one image: C planes of mh x mw, plane c at s + c * plane
  int C, mw;
  std::int64_t plane;
  axis ay, ax;        // low-resolution -> input
  bool unletterbox;   // original resolution: uy, ux over the crop at (top, left)
  axis uy, ux;
  int top, left;
  int out_w;
  std::int16_t* out;
  /// Input-resolution value of channel plane p at input row r, column x: fma(t0, h0, t1 * h1) with
  /// t = fma(x00, w0, x01 * w1) (PyTorch's, as the CPU computes it).
  GYOLO_HD float input_value(const float* p, int r, int x) const {
    const float* a = p + std::int64_t(ay.i0[r]) * mw;
    const float* b = p + std::int64_t(ay.i1[r]) * mw;
    const float ta = fmaf(a[ax.i0[x]], ax.l0[x], mul_rn(a[ax.i1[x]], ax.l1[x]));
    const float tb = fmaf(b[ax.i0[x]], ax.l0[x], mul_rn(b[ax.i1[x]], ax.l1[x]));
    return fmaf(ta, ay.l0[r], mul_rn(tb, ay.l1[r]));
  }
  GYOLO_HD float value(const float* p, int Y, int X) const {
    if (!unletterbox) return input_value(p, Y, X);
    const int ra = top + uy.i0[Y], rb = top + uy.i1[Y], xa = left + ux.i0[X], xb = left + ux.i1[X];
    const float ua = fmaf(input_value(p, ra, xa), ux.l0[X], mul_rn(input_value(p, ra, xb), ux.l1[X]));
    const float ub = fmaf(input_value(p, rb, xa), ux.l0[X], mul_rn(input_value(p, rb, xb), ux.l1[X]));
    return fmaf(ua, uy.l0[Y], mul_rn(ub, uy.l1[Y]));
  }
  GYOLO_HD void operator()(std::int64_t i) const {
    const int Y = int(i / out_w), X = int(i % out_w);
    float best = value(s, Y, X);
    int bc = 0;
    for (int c = 1; c < C; ++c) {
      const float v = value(s + c * plane, Y, X);
      if (v > best) best = v, bc = c;
    }
    out[i] = std::int16_t(bc);
  }
};

/// Runs a body over [0, n) on the host: what a launch does on the device, for the host tests.
template <class F>
void host_for(std::int64_t n, const F& f) {
  for (std::int64_t i = 0; i < n; ++i) f(i);
}

/// Runs the tensor-core convolution's staging and epilogue on the host (float tiles, mma_host in
/// place of the tensor cores), block by block and phase by phase.
inline void host_tiled_tc(const conv_tile_tc<float>& f) {
  using T = conv_tile_tc<float>;
  static thread_local T::smem s;
  auto keep = [](float v) { return v; };
  for (int bz = 0; bz < f.grid_z(); ++bz)
    for (int by = 0; by < f.grid_y(); ++by)
      for (int bx = 0; bx < f.grid_x(); ++bx) {
        for (auto& r : s.C)
          for (auto& v : r) v = 0.f;
        for (int k0 = 0; k0 < f.K(); k0 += T::BK) {
          for (int t = 0; t < T::threads; ++t) f.load(t, k0, bx, by, bz, s, keep);
          for (int wp = 0; wp < T::warps; ++wp) f.mma_host(wp, s);
        }
        for (int t = 0; t < T::threads; ++t) f.store(t, bx, by, bz, s);
      }
}

/// Runs the tiled convolution on the host as the device does: every block, and in it every thread's
/// load, then (the barrier) every thread's compute, per K-slice; then every thread's store.
inline void host_tiled(const conv_tile& f) {
  using T = conv_tile;
  static thread_local T::smem s;
  static thread_local float acc[T::threads][T::TM][T::TN];
  for (int bz = 0; bz < f.grid_z(); ++bz)
    for (int by = 0; by < f.grid_y(); ++by)
      for (int bx = 0; bx < f.grid_x(); ++bx) {
        for (auto& a : acc)
          for (auto& r : a)
            for (auto& v : r) v = 0.f;
        for (int k0 = 0; k0 < f.K(); k0 += T::BK) {
          for (int t = 0; t < T::threads; ++t) f.load(t, k0, bx, by, bz, s);
          for (int t = 0; t < T::threads; ++t) f.compute(t, s, acc[t]);
        }
        for (int t = 0; t < T::threads; ++t) f.store(t, bx, by, bz, acc[t]);
      }
}

}  // namespace gyolo::cuda_bodies
