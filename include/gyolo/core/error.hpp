// gyolo's exception types: every message is one line that names the problem. gyolo::error is the
// base of all of them; resource_error (a memory limit reached) derives from it.
#pragma once
#include <stdexcept>
#include <string>
#include <string_view>

namespace gyolo {

struct error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// A resource limit reached before the allocation that would exceed it (gyolo::set_memory_limit).
struct resource_error : error {
  using error::error;
};

/// Bytes that came from a file, as they may appear in a message: printable ASCII kept, every other
/// byte as `\xNN`; at most max_len bytes, then "...".
inline std::string printable(std::string_view s, std::size_t max_len = std::string_view::npos) {
  static const char* hex = "0123456789abcdef";
  std::string r;
  for (std::size_t i = 0; i < s.size() && i < max_len; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7F) {
      r.push_back(char(c));
    } else {
      r += "\\x";
      r.push_back(hex[c >> 4]);
      r.push_back(hex[c & 15]);
    }
  }
  if (s.size() > max_len) r += "...";
  return r;
}

#define GYOLO_CHECK(cond, msg)                 \
  do {                                         \
    if (!(cond)) throw ::gyolo::error(msg);    \
  } while (0)

}  // namespace gyolo
