// Built with only `pkg-config --cflags --libs gyolo` by tests/consumer/run.sh: a light header of gyolo
// and a call into its compiled part (libgyolo.a).
#include <cstdio>

#include <gyolo/kernels/cpu_isa.hpp>
#include <gyolo/version.hpp>

int main() {
  std::printf("gyolo %s via pkg-config, kernels: %s\n", gyolo::version, gyolo::to_string(gyolo::best_cpu_isa()));
  return 0;
}
