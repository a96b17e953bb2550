// TL_CHECK: assertion for programmer errors inside the engine's hot loops (not for bad input,
// which is reported with absl::Status). Always on; prints the condition and aborts.
#ifndef TAPELOOP_ENGINE_CHECK_H_
#define TAPELOOP_ENGINE_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define TL_CHECK(cond)                                                                  \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "%s:%d: TL_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)

#endif  // TAPELOOP_ENGINE_CHECK_H_
