// CUDA RMSNorm: one block per row, a block-wide sum of squares, then the scaled write.
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "engine/kernels/rms_norm.h"

namespace tapeloop::engine {
namespace {

constexpr int kThreads = 256;

__global__ void RmsNormKernel(float* y, const float* x, const float* w, int dim, float eps) {
  const float* xr = x + static_cast<long>(blockIdx.x) * dim;
  float* yr = y + static_cast<long>(blockIdx.x) * dim;
  float partial = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) partial += xr[i] * xr[i];
  // Warp reduction, then one value per warp through shared memory.
  for (int off = 16; off > 0; off >>= 1) partial += __shfl_xor_sync(0xffffffff, partial, off);
  __shared__ float warp_sums[kThreads / 32];
  __shared__ float inv;
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = partial;
  __syncthreads();
  if (threadIdx.x == 0) {
    float sum = 0.f;
    for (int k = 0; k < kThreads / 32; ++k) sum += warp_sums[k];
    inv = rsqrtf(sum / dim + eps);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * inv * w[i];
}

}  // namespace

absl::Status RmsNormForwardCuda(float* y, const float* x, const float* w, int rows, int dim,
                                float eps) {
  if (rows == 0) return absl::OkStatus();
  RmsNormKernel<<<rows, kThreads>>>(y, x, w, dim, eps);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) {
    return absl::InternalError(absl::StrCat("RmsNormForwardCuda launch: ", cudaGetErrorString(err)));
  }
  return absl::OkStatus();
}

}  // namespace tapeloop::engine
