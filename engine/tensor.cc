#include "engine/tensor.h"

#include <array>

namespace tapeloop::engine {

int64_t NumElements(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ShapeString(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

float* ThreadScratch(Scratch slot, int64_t n) {
  thread_local std::array<std::vector<float>, static_cast<size_t>(Scratch::kCount)> buffers;
  std::vector<float>& buf = buffers[static_cast<size_t>(slot)];
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(n);
  return buf.data();
}

}  // namespace tapeloop::engine
