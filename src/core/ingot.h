// Umbrella header of the array framework.
#pragma once

#include "core/allocator.h"
#include "core/array.h"
#include "core/device.h"
#include "core/dtype.h"
#include "core/fast/fast.h"
#include "core/ops/ops.h"
#include "core/transforms/autodiff.h"
#include "core/transforms/compile.h"
#include "core/transforms/eval.h"
