// Defines eval_cuda of a primitive as throwing Unsupported (builds without CUDA).
#pragma once

#include "core/primitive.h"
#include "util/error.h"

#define INGOT_NO_CUDA_UNARY(NAME)                                    \
  void ::ingot::NAME::eval_cuda(const std::vector<Array>&, Array&) { \
    raise<Unsupported>("[" #NAME "] ingot was built without CUDA");  \
  }
#define INGOT_NO_CUDA_MULTI(NAME)                                                 \
  void ::ingot::NAME::eval_cuda(const std::vector<Array>&, std::vector<Array>&) { \
    raise<Unsupported>("[" #NAME "] ingot was built without CUDA");               \
  }
