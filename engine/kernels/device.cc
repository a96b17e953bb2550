#include "engine/kernels/device.h"

#ifdef TAPELOOP_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace tapeloop::engine {

int CudaDeviceCount() {
#ifdef TAPELOOP_HAVE_CUDA
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
#else
  return 0;
#endif
}

}  // namespace tapeloop::engine
