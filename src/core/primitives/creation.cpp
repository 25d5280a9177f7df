// VJPs/JVPs of the creation primitives that have inputs (Full, Copy, Contiguous): identity.
#include "core/primitives/creation.h"
#include "core/ops/creation.h"

namespace ingot {

#define INGOT_IDENTITY_GRAD(NAME)                                                        \
  std::vector<Array> NAME::vjp(const std::vector<Array>&, const std::vector<Array>& cot, \
                               const std::vector<int>&, const std::vector<Array>&) {     \
    return {cot[0]};                                                                     \
  }                                                                                      \
  std::vector<Array> NAME::jvp(const std::vector<Array>&, const std::vector<Array>& tan, \
                               const std::vector<int>&) {                                \
    return {tan[0]};                                                                     \
  }
INGOT_IDENTITY_GRAD(Full)
INGOT_IDENTITY_GRAD(Copy)
INGOT_IDENTITY_GRAD(Contiguous)
#undef INGOT_IDENTITY_GRAD

std::vector<Array> ToDevice::vjp(const std::vector<Array>& primals,
                                 const std::vector<Array>& cotangents, const std::vector<int>&,
                                 const std::vector<Array>&) {
  return {to_device(cotangents[0], primals[0].device())};
}

}  // namespace ingot
