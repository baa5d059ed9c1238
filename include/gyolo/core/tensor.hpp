// Tensors and views. Layout is NCHW, float32 by default. A view may be a channel slice of a
// larger tensor (so Concat/split cost nothing): element (n, c, y, x) lives at
// data[n * batch_stride + (c * h + y) * w + x].
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "gyolo/core/backend.hpp"
#include "gyolo/core/error.hpp"

namespace gyolo {

struct shape4 {
  int n = 0, c = 0, h = 0, w = 0;
  std::int64_t numel() const { return std::int64_t(n) * c * h * w; }
  std::int64_t plane() const { return std::int64_t(h) * w; }
  bool operator==(const shape4&) const = default;
  std::string str() const {
    return "[" + std::to_string(n) + ", " + std::to_string(c) + ", " + std::to_string(h) + ", " +
           std::to_string(w) + "]";
  }
};

template <class T, class Space = host_space>
struct view {
  T* data = nullptr;
  int n = 0, c = 0, h = 0, w = 0;
  std::int64_t batch_stride = 0;  // elements between consecutive images

  shape4 shape() const { return {n, c, h, w}; }
  std::int64_t plane() const { return std::int64_t(h) * w; }
  std::int64_t numel() const { return std::int64_t(n) * c * h * w; }
  bool contiguous() const { return batch_stride == std::int64_t(c) * h * w || n <= 1; }
  T* image(int i) const { return data + i * batch_stride; }
  T* channel(int i, int ch) const { return data + i * batch_stride + ch * plane(); }
  T& at(int i, int ch, int y, int x) const { return data[i * batch_stride + (ch * std::int64_t(h) + y) * w + x]; }

  /// Channels [c0, c0 + count).
  view slice(int c0, int count) const {
    GYOLO_CHECK(c0 >= 0 && count >= 0 && c0 + count <= c, "view::slice out of range");
    return {data + c0 * plane(), n, count, h, w, batch_stride};
  }
  view batch(int i) const { return {data + i * batch_stride, 1, c, h, w, std::int64_t(c) * h * w}; }
  operator view<const T, Space>() const { return {data, n, c, h, w, batch_stride}; }
};

template <class T = float, class Space = host_space> using cview = view<const T, Space>;

namespace detail {
/// Reuses large host blocks across forward passes: a forward pass allocates the same sizes every
/// time, and returning them to the OS each time costs page faults (several % of a 640x640 pass).
/// Blocks are bucketed by exact (page-rounded) size; the cache holds at most `cap` bytes.
class block_cache {
 public:
  static block_cache& instance() {
    static block_cache c;
    return c;
  }
  void* acquire(std::size_t bytes) {
    if (bytes >= min_block) {
      std::lock_guard<std::mutex> lk(m_);
      auto it = free_.find(bytes);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        held_ -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw error("out of memory allocating " + std::to_string(bytes) + " bytes");
    return p;
  }
  void release(void* p, std::size_t bytes) {
    if (!p) return;
    if (bytes >= min_block) {
      std::lock_guard<std::mutex> lk(m_);
      if (held_ + bytes <= cap) {
        free_.emplace(bytes, p);
        held_ += bytes;
        return;
      }
    }
    std::free(p);
  }
  /// Returns every cached block to the system.
  void trim() {
    std::lock_guard<std::mutex> lk(m_);
    for (auto& [b, p] : free_) std::free(p);
    free_.clear();
    held_ = 0;
  }
  ~block_cache() { trim(); }

  static constexpr std::size_t min_block = std::size_t(1) << 20;
  static constexpr std::size_t cap = std::size_t(1) << 30;

 private:
  std::mutex m_;
  std::multimap<std::size_t, void*> free_;
  std::size_t held_ = 0;
};

inline std::size_t round_bytes(std::size_t bytes) {
  if (bytes == 0) bytes = 64;
  return bytes >= block_cache::min_block ? (bytes + 4095) / 4096 * 4096 : (bytes + 63) / 64 * 64;
}
struct block_free {
  std::size_t bytes = 0;
  void operator()(void* p) const { block_cache::instance().release(p, bytes); }
};
}  // namespace detail

/// Owning host tensor (64-byte aligned). Device tensors live in the CUDA backend.
template <class T = float>
class tensor {
 public:
  tensor() = default;
  explicit tensor(shape4 s) { resize(s); }

  void resize(shape4 s) {
    GYOLO_CHECK(s.n >= 0 && s.c >= 0 && s.h >= 0 && s.w >= 0, "tensor: negative shape " + s.str());
    if (s.numel() > capacity_) {
      const std::size_t bytes = detail::round_bytes(std::size_t(s.numel()) * sizeof(T));
      buf_.reset();
      buf_ = std::unique_ptr<T, detail::block_free>(static_cast<T*>(detail::block_cache::instance().acquire(bytes)),
                                                    detail::block_free{bytes});
      capacity_ = s.numel();
    }
    shape_ = s;
  }
  void zero() { if (numel()) std::memset(buf_.get(), 0, std::size_t(numel()) * sizeof(T)); }

  shape4 shape() const { return shape_; }
  std::int64_t numel() const { return shape_.numel(); }
  T* data() { return buf_.get(); }
  const T* data() const { return buf_.get(); }
  T& operator[](std::int64_t i) { return buf_.get()[i]; }
  const T& operator[](std::int64_t i) const { return buf_.get()[i]; }

  view<T> v() { return {buf_.get(), shape_.n, shape_.c, shape_.h, shape_.w, std::int64_t(shape_.c) * shape_.h * shape_.w}; }
  cview<T> v() const { return {buf_.get(), shape_.n, shape_.c, shape_.h, shape_.w, std::int64_t(shape_.c) * shape_.h * shape_.w}; }
  cview<T> cv() const { return v(); }

 private:
  std::unique_ptr<T, detail::block_free> buf_;
  std::int64_t capacity_ = 0;
  shape4 shape_{};
};

/// Deep copy of a (possibly strided) view into a fresh contiguous tensor.
template <class T>
tensor<std::remove_const_t<T>> to_tensor(view<T> x) {
  tensor<std::remove_const_t<T>> t(x.shape());
  for (int i = 0; i < x.n; ++i)
    std::memcpy(t.data() + std::int64_t(i) * x.c * x.plane(), x.image(i), std::size_t(x.c * x.plane()) * sizeof(T));
  return t;
}

}  // namespace gyolo
