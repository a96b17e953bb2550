// Tensor basics: the engine keeps tensors as contiguous row-major float32 buffers with their
// shape in a comment where they are declared (glossary in engine/README.md). These helpers
// cover what checkpoints and parameter tables need: shapes and named tensors.
#ifndef TAPELOOP_ENGINE_TENSOR_H_
#define TAPELOOP_ENGINE_TENSOR_H_

#include <cstdint>
#include <string>
#include <vector>

namespace tapeloop::engine {

using Shape = std::vector<int64_t>;

// Product of the dimensions (1 for a scalar shape []).
int64_t NumElements(const Shape& shape);

// "[2, 3]".
std::string ShapeString(const Shape& shape);

// A tensor that owns its data: f32, row-major, data.size() == NumElements(shape).
struct Tensor {
  Shape shape;
  std::vector<float> data;
};

// A borrowed, read-only named view, used when writing checkpoints.
struct TensorRef {
  std::string name;
  Shape shape;
  const float* data;  // f32 [NumElements(shape)], not owned
};

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_TENSOR_H_
