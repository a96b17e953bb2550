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

// Scratch buffers of the decode step. A batched decode step needs a few f32 buffers of
// B x width floats per block; allocating them per call costs an allocation and a zero fill and,
// above glibc's mmap threshold (128 KiB, e.g. a B = 64 step's in_proj output), page faults on
// every call. ThreadScratch(slot, n) returns a buffer of at least n floats owned by the calling
// thread and reused by its later calls with the same slot (grown, never shrunk; contents
// unspecified). It stays valid until the same thread asks for the same slot again, so one
// function holds each slot at most once, and a slot belongs to one function (listed here).
// Thread-safe: each thread has its own buffers.
enum class Scratch {
  kStepHidden,       // Model::StepBatch: f32 [B, D] residual stream
  kStepNormed,       // Model::StepBatch: f32 [B, D] normed input of a block
  kStepMixed,        // Model::StepBatch: f32 [B, D] a block's output
  kAttentionQkv,     // AttentionStep: f32 [B, Hq*hd + 2*Hkv*hd]
  kAttentionPart,    // AttentionStep: f32 [B, Hq*hd] one of q, k, v when not fused
  kAttentionOut,     // AttentionStep: f32 [B, Hq*hd] input of o_proj
  kAttentionScores,  // AttentionForward: f32 [64, keys] one query block's scores
  kMlpGateUp,        // MlpStep: f32 [B, 2F] gate | up
  kMlpPart,          // MlpStep: f32 [B, F] gate or up when not fused
  kMlpAct,           // MlpStep: f32 [B, F] input of down_proj
  kMambaProj,        // Mamba2Step: f32 [B, inner + conv_dim + H] in_proj output
  kMambaY,           // Mamba2Step: f32 [B, inner] input of out_proj
  kCount,
};
float* ThreadScratch(Scratch slot, int64_t n);

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_TENSOR_H_
