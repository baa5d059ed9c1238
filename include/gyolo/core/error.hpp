// The single exception type of gyolo: every message is one line that names the problem.
#pragma once
#include <stdexcept>
#include <string>

namespace gyolo {

struct error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

#define GYOLO_CHECK(cond, msg)                 \
  do {                                         \
    if (!(cond)) throw ::gyolo::error(msg);    \
  } while (0)

}  // namespace gyolo
