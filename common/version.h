// Build identity of this tapeloop binary.
#ifndef TAPELOOP_COMMON_VERSION_H_
#define TAPELOOP_COMMON_VERSION_H_

#include <string_view>

namespace tapeloop {

// The project version ("0.1.0").
std::string_view Version();

// True when CUDA kernels were compiled into this binary.
bool CudaCompiledIn();

}  // namespace tapeloop

#endif  // TAPELOOP_COMMON_VERSION_H_
