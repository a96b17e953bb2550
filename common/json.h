// JSON text that never throws: strings holding bytes that are not UTF-8 (a model can emit any
// byte) are written with U+FFFD in their place instead of aborting the process.
#ifndef TAPELOOP_COMMON_JSON_H_
#define TAPELOOP_COMMON_JSON_H_

#include <string>

#include "nlohmann/json.hpp"

namespace tapeloop {

inline std::string DumpJson(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', /*ensure_ascii=*/false, nlohmann::json::error_handler_t::replace);
}

}  // namespace tapeloop

#endif  // TAPELOOP_COMMON_JSON_H_
