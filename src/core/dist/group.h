// Communication groups of multi-process runs (DESIGN.md §3: one process per GPU, an env-var
// rendezvous): rank, size, the TCP transport the CPU collectives and the NCCL rendezvous use,
// and a slot where the GPU backend keeps its communicator. Collective ops are in dist/ops.h.
#pragma once

#include <memory>
#include <mutex>
#include <string>

namespace ingot::util {
class StarNetwork;
}

namespace ingot::dist {

/// How a group is formed: this process's rank among `size`, and where rank 0 listens.
struct GroupOptions {
  int rank = 0;
  int size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  /// Seconds to wait for the rendezvous and for any message before failing (a dead or stuck
  /// peer gives an IoError, never a hang).
  double timeout_s = 300.0;
};

/// A set of processes that run collectives together. A single-rank group needs no network and
/// its collectives return their input unchanged.
class Group {
 public:
  /// Joins the group (a rendezvous through rank 0 when size > 1); throws IoError on failure.
  explicit Group(const GroupOptions& opt);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  /// The group described by INGOT_RANK, INGOT_WORLD_SIZE, INGOT_MASTER_ADDR,
  /// INGOT_MASTER_PORT and INGOT_DIST_TIMEOUT (a single-rank group when INGOT_WORLD_SIZE is
  /// unset or 1).
  static GroupOptions options_from_env();

  int rank() const { return opt_.rank; }
  int size() const { return opt_.size; }
  const GroupOptions& options() const { return opt_; }
  /// The TCP transport (throws for a single-rank group, which has none).
  util::StarNetwork& network() const;

  /// Per-backend state kept with the group (the CUDA backend's NCCL communicator), created by
  /// the backend on first use under state_mutex().
  struct BackendState {
    virtual ~BackendState() = default;
  };
  std::mutex& state_mutex() const { return state_mutex_; }
  std::unique_ptr<BackendState>& gpu_state() const { return gpu_state_; }

 private:
  GroupOptions opt_;
  std::unique_ptr<util::StarNetwork> net_;
  mutable std::mutex state_mutex_;
  mutable std::unique_ptr<BackendState> gpu_state_;
};

/// The process-wide group, made from the environment on first use (see options_from_env).
std::shared_ptr<Group> world();
/// Replaces the process-wide group (tests, embedders that form groups themselves).
void set_world(std::shared_ptr<Group> g);

}  // namespace ingot::dist
