// Backend policies. A backend is a tag type; layer code is written once against
// `kernels<B>` and runs on every backend. Memory spaces are part of the view type, so a
// host pointer can never be handed to a device kernel by accident.
#pragma once
#include <concepts>
#include <type_traits>

namespace gyolo {

struct host_space {};
struct device_space {};

/// Naive, obviously-correct kernels: the oracle for every fast kernel.
struct reference {
  using space = host_space;
  static constexpr const char* name = "reference";
};
/// Eigen/OpenMP CPU kernels.
struct cpu {
  using space = host_space;
  static constexpr const char* name = "cpu";
};
/// CUDA kernels (compiled only with GYOLO_ENABLE_CUDA; declared here so that types that
/// mention it are always well-formed).
struct cuda {
  using space = device_space;
  static constexpr const char* name = "cuda";
};

template <class B>
concept backend = requires {
  typename B::space;
  { B::name } -> std::convertible_to<const char*>;
};

template <class B> inline constexpr bool is_host_backend = std::is_same_v<typename B::space, host_space>;

/// The host backend that works beside B: B itself for host backends, the CPU backend for device ones
/// (post-processing, and what a device backend does not run yet, e.g. the caption head on CUDA).
template <class B> using host_backend_t = std::conditional_t<is_host_backend<B>, B, cpu>;

/// Activation applied in a kernel epilogue.
enum class act { none, silu, relu, sigmoid };

}  // namespace gyolo
