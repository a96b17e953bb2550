#include "common/version.h"

namespace tapeloop {

std::string_view Version() { return TAPELOOP_VERSION; }

bool CudaCompiledIn() {
#ifdef TAPELOOP_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace tapeloop
