// Internal assertion failure: reported as an ingot::Error so a process never aborts.
#include "util/error.h"

namespace ingot {

void assert_fail(const char* expr, const char* file, int line, const std::string& msg) {
  throw Error(fmt::format("[internal] assertion `{}` failed at {}:{}{}{}", expr, file, line,
                          msg.empty() ? "" : ": ", msg));
}

}  // namespace ingot
