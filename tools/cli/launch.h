// The launcher behind `ingot launch`, also used by `--tp N` to relaunch a command as N ranks.
#pragma once

#include <optional>

namespace ingot::cli {

/// When argv holds `--tp N` or `--dp N` (N > 1) and this process is not one of a group's ranks
/// (INGOT_WORLD_SIZE unset): runs the same command under `ingot launch --nproc N` and returns
/// its exit code; otherwise nullopt (run the command here).
std::optional<int> relaunch_for_tp(int argc, char** argv);

}  // namespace ingot::cli
