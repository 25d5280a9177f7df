// Primitive defaults (vjp/jvp/output_shapes throw Unsupported).
#include "core/primitive.h"

namespace ingot {

std::vector<Array> Primitive::vjp(const std::vector<Array>&, const std::vector<Array>&,
                                  const std::vector<int>&, const std::vector<Array>&) {
  raise<Unsupported>("[{}] has no vjp", name());
}

std::vector<Array> Primitive::jvp(const std::vector<Array>&, const std::vector<Array>&,
                                  const std::vector<int>&) {
  raise<Unsupported>("[{}] has no jvp", name());
}

std::vector<Shape> Primitive::output_shapes(const std::vector<Array>&) {
  raise<Unsupported>("[{}] cannot infer output shapes (shapeless compile)", name());
}

}  // namespace ingot
