// What accelerator this process can use.
#ifndef TAPELOOP_ENGINE_KERNELS_DEVICE_H_
#define TAPELOOP_ENGINE_KERNELS_DEVICE_H_

namespace tapeloop::engine {

// Number of CUDA devices visible to this process; 0 in a CPU-only build or with no GPU.
int CudaDeviceCount();

}  // namespace tapeloop::engine

#endif  // TAPELOOP_ENGINE_KERNELS_DEVICE_H_
