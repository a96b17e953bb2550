// Parameter spec tables: every layer lists its parameters once (HF name suffix, shape, init).
// The model derives from these tables the flat parameter buffer's offsets, the checkpoint
// tensor names (prefix + suffix) and random initialization; a trainer derives gradients and
// optimizer moments from the same offsets. Adding a tensor to a layer is one line in its table.
#ifndef TAPELOOP_ENGINE_LAYERS_PARAM_SPEC_H_
#define TAPELOOP_ENGINE_LAYERS_PARAM_SPEC_H_

#include <functional>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace tapeloop::engine {

enum class Init {
  kZeros,
  kOnes,
  kNormal,        // N(0, initializer_range)  (HF: Linear and Embedding weights)
  kConvUniform,   // U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = shape[1] * shape[2] (torch Conv1d)
  kMambaALog,     // log(1..H)
  kMambaDtBias,   // softplus^-1(dt), dt log-uniform in [time_step_min, time_step_max], floored
};

struct ParamSpec {
  std::string suffix;  // HF name below the layer's prefix, e.g. "in_proj.weight"
  Shape shape;
  Init init;
};

// Resolves a suffix of the layer's table to its storage (f32, NumElements(shape) floats).
// The same function binds parameters, gradients or moments: whatever buffer it points into.
using ParamLookup = std::function<float*(const std::string& suffix)>;

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_LAYERS_PARAM_SPEC_H_
