// What the gyolo CLI's translation units share.
#pragma once
#include <string>

#include "gyolo/core/error.hpp"

/// gyolo train-step (examples/cli_train_step.cpp).
int train_step_command(int argc, char** argv);

/// gyolo train (examples/cli_train.cpp).
int train_command(int argc, char** argv);

/// gyolo val (examples/cli_train.cpp).
int val_command(int argc, char** argv);

/// gyolo datagen (examples/cli_datagen.cpp).
int datagen_command(int argc, char** argv);

/// An integer flag value in [lo, hi], or an error naming the flag.
inline int parse_int(const std::string& flag, const std::string& v, int lo, int hi) {
  std::size_t pos = 0;
  long x = 0;
  try {
    x = std::stol(v, &pos);
  } catch (...) {
    pos = 0;
  }
  if (pos != v.size() || v.empty()) throw gyolo::error(flag + " expects an integer, got '" + v + "'");
  if (x < lo || x > hi) throw gyolo::error(flag + " must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + v);
  return int(x);
}
