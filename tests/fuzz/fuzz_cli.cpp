// libFuzzer target: the gyolo CLI's argument parsing (examples/gyolo_cli.cpp check_command_line:
// --memory-limit, the command, and every command's parser: predict, bench, info, train, val,
// datagen, train-step). The input is split at NUL bytes into at most 64 arguments after "gyolo".
// Passes when every command line is accepted, refused with gyolo::error, or answered with its usage
// (--help); any other exception, a crash or a sanitizer report is a finding. The parsers read and
// write nothing, so this is safe to run on any input.
// Built in the sanitizer stage's ASan build (CMake option GYOLO_FUZZ_CLI; tests/sanitize/run.sh).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include "cli_commands.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::string> args{"gyolo"};
  std::string cur;
  for (std::size_t i = 0; i < size && args.size() < 65; ++i) {
    if (data[i] == 0) {
      args.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(char(data[i]));
    }
  }
  if (args.size() < 65 && (size == 0 || data[size - 1] != 0)) args.push_back(cur);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  try {
    check_command_line(int(args.size()), argv.data());
  } catch (const gyolo::error&) {
  } catch (const help_shown&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_cli: foreign exception: %s\n", e.what());
    std::abort();
  }
  return 0;
}
