// Generalist YOLO in C++: one include.
#pragma once
#include "gyolo/core/backend.hpp"
#include "gyolo/core/context.hpp"
#include "gyolo/core/error.hpp"
#include "gyolo/core/tensor.hpp"
#include "gyolo/io/gguf.hpp"
#include "gyolo/io/npy.hpp"
#include "gyolo/kernels/cpu.hpp"
#include "gyolo/kernels/reference.hpp"
#include "gyolo/model/config.hpp"
#include "gyolo/model/model.hpp"
#include "gyolo/model/vision.hpp"
#include "gyolo/pipeline.hpp"
