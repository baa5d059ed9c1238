// Tensors and views. Layout is NCHW, float32 by default. A view may be a channel slice of a
// larger tensor (so Concat/split cost nothing): element (n, c, y, x) lives at
// data[n * batch_stride + (c * h + y) * w + x].
#pragma once
#include <atomic>
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

#include <sys/mman.h>  // mmap: large blocks bypass the C heap
#include <unistd.h>    // sysconf: the physical memory, for the default limit

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
/// Every host tensor block goes through here (tensor<T>: inference, training, the caption head).
/// - Cache: large blocks freed by a forward pass are kept for the next one (a pass allocates the
///   same sizes every time, and returning them to the OS each time costs page faults, several % of
///   a 640x640 pass). Blocks are bucketed by exact (page-rounded) size; the cache holds at most
///   cache_cap bytes (default 1 GiB; set_memory_cache_cap, trim_memory_cache).
/// - Large blocks (>= 128 KiB, glibc's own initial mmap threshold) are mapped from the system (mmap)
///   and unmapped when the cache does not keep them, not taken from the C heap: freed heap memory
///   stays resident and fragments when block sizes vary from run to run (inputs of mixed sizes), so
///   a long-running program's resident set would wander by several % (docs/reliability.md, Soak);
///   mapped blocks return exactly. (With 1 MiB here, the blocks of 128 KiB to 1 MiB still doubled
///   the C heap of the soak and its resident set grew by 1 % over 2,500 runs.)
/// - Limit: the bytes of live blocks may not exceed `limit` (default 3/4 of the physical memory;
///   set_memory_limit): the allocation that would exceed it throws resource_error instead, before
///   anything is allocated, so that e.g. a huge input size fails with a message, not the OOM killer.
class block_cache {
 public:
  static block_cache& instance() {
    static block_cache c;
    return c;
  }
  void* acquire(std::size_t bytes) {
    const std::size_t lim = limit_.load(std::memory_order_relaxed);
    const std::size_t now = live_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    if (lim && now > lim) {
      live_.fetch_sub(bytes, std::memory_order_relaxed);
      throw resource_error("allocating " + mib(bytes) + " would take gyolo's tensors to " + mib(now) + ", above the memory limit of " +
                           mib(lim) + " (a smaller input size or batch; gyolo::set_memory_limit or the CLI's --memory-limit)");
    }
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
    void* p = bytes >= min_block ? map(bytes) : std::aligned_alloc(64, bytes);
    if (!p) {
      live_.fetch_sub(bytes, std::memory_order_relaxed);
      throw resource_error("out of memory allocating " + mib(bytes));
    }
    return p;
  }
  void release(void* p, std::size_t bytes) {
    if (!p) return;
    live_.fetch_sub(bytes, std::memory_order_relaxed);
    if (bytes >= min_block) {
      std::lock_guard<std::mutex> lk(m_);
      if (held_ + bytes <= cap_) {
        free_.emplace(bytes, p);
        held_ += bytes;
        return;
      }
      unmap(p, bytes);
      return;
    }
    std::free(p);
  }
  /// Returns cached blocks to the system until the cache holds at most `keep` bytes.
  void trim(std::size_t keep = 0) {
    std::lock_guard<std::mutex> lk(m_);
    for (auto it = free_.begin(); it != free_.end() && held_ > keep;) {
      held_ -= it->first;
      unmap(it->second, it->first);
      it = free_.erase(it);
    }
  }
  void set_cap(std::size_t bytes) {
    {
      std::lock_guard<std::mutex> lk(m_);
      cap_ = bytes;
    }
    trim(bytes);
  }
  void set_limit(std::size_t bytes) { limit_.store(bytes, std::memory_order_relaxed); }
  std::size_t live() const { return live_.load(std::memory_order_relaxed); }
  std::size_t limit() const { return limit_.load(std::memory_order_relaxed); }
  std::size_t held() {
    std::lock_guard<std::mutex> lk(m_);
    return held_;
  }
  std::size_t cap() {
    std::lock_guard<std::mutex> lk(m_);
    return cap_;
  }
  ~block_cache() { trim(); }

  static constexpr std::size_t min_block = std::size_t(1) << 17;
  static constexpr std::size_t default_cap = std::size_t(1) << 30;
  /// 3/4 of the physical memory (0, no limit, where the system does not tell).
  static std::size_t default_limit() {
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
    return pages > 0 && page > 0 ? std::size_t(pages) / 4 * 3 * std::size_t(page) : 0;
  }
  static std::string mib(std::size_t b) { return std::to_string((b + (1u << 20) - 1) >> 20) + " MiB"; }

 private:
  // (bytes: a multiple of the page size, round_bytes; mapped memory is zero-filled and page aligned.
  // Under AddressSanitizer the blocks come from its malloc, which puts red zones around them.)
  static void* map(std::size_t bytes) {
    if constexpr (address_sanitizer) return std::aligned_alloc(64, bytes);
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
  static void unmap(void* p, std::size_t bytes) {
    if constexpr (address_sanitizer) return std::free(p);
    ::munmap(p, bytes);
  }
#if defined(__SANITIZE_ADDRESS__)
  static constexpr bool address_sanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  static constexpr bool address_sanitizer = true;
#else
  static constexpr bool address_sanitizer = false;
#endif
#else
  static constexpr bool address_sanitizer = false;
#endif

  std::mutex m_;
  std::multimap<std::size_t, void*> free_;
  std::size_t held_ = 0, cap_ = default_cap;
  std::atomic<std::size_t> live_{0}, limit_{default_limit()};
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

/// gyolo's host memory (every tensor: inference, training, the caption head), process-wide.
struct memory_stats {
  std::size_t live_bytes = 0;       // held by tensors now
  std::size_t cached_bytes = 0;     // freed blocks kept for reuse
  std::size_t cache_cap_bytes = 0;  // the most the cache keeps
  std::size_t limit_bytes = 0;      // the most live_bytes may reach (0: no limit)
};
inline memory_stats memory_usage() {
  auto& c = detail::block_cache::instance();
  return {c.live(), c.held(), c.cap(), c.limit()};
}
/// Caps the live tensor memory: an allocation beyond it throws gyolo::resource_error before it is
/// made. 0: no limit. Default: 3/4 of the physical memory.
inline void set_memory_limit(std::size_t bytes) { detail::block_cache::instance().set_limit(bytes); }
/// Caps the cache of freed blocks (default 1 GiB) and trims it to the new cap; 0 disables caching.
inline void set_memory_cache_cap(std::size_t bytes) { detail::block_cache::instance().set_cap(bytes); }
/// Returns every cached block to the system (e.g. after a run at a large input size).
inline void trim_memory_cache() { detail::block_cache::instance().trim(); }

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
      buf_.reset();  // (an acquire that throws leaves the tensor empty, not pointing at freed memory)
      capacity_ = 0;
      shape_ = {};
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
