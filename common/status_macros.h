// Status propagation macros used at every module boundary.
//
// Debian 12's abseil has no public RETURN_IF_ERROR / ASSIGN_OR_RETURN, so they are defined
// here, once, for the whole project.
//
//   RETURN_IF_ERROR(DoThing());                 // returns the status if it is not OK
//   ASSIGN_OR_RETURN(auto value, MakeThing());  // unwraps a StatusOr or returns its status
#ifndef TAPELOOP_COMMON_STATUS_MACROS_H_
#define TAPELOOP_COMMON_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TAPELOOP_CONCAT_INNER_(a, b) a##b
#define TAPELOOP_CONCAT_(a, b) TAPELOOP_CONCAT_INNER_(a, b)

#define RETURN_IF_ERROR(expr)                                \
  do {                                                       \
    ::absl::Status tapeloop_status_ = (expr);                \
    if (!tapeloop_status_.ok()) return tapeloop_status_;     \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  TAPELOOP_ASSIGN_OR_RETURN_IMPL_(TAPELOOP_CONCAT_(tapeloop_statusor_, __LINE__), lhs, expr)

#define TAPELOOP_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                    \
  if (!statusor.ok()) return std::move(statusor).status();   \
  lhs = std::move(statusor).value()

#endif  // TAPELOOP_COMMON_STATUS_MACROS_H_
