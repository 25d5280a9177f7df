// TCP transport between the processes of a group: a star around rank 0, which listens on the
// master address and port (the env-var rendezvous of DESIGN.md §3). Byte messages with a
// length header, timeouts on every wait, and clear errors when a peer dies or disagrees.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ingot::util {

/// Where and how the processes of a group meet.
struct StarOptions {
  int rank = 0;
  int size = 1;
  /// Host of rank 0 (name or IPv4 address); rank 0 listens on all interfaces.
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  /// Seconds to wait for the rendezvous and for each message before failing.
  double timeout_s = 300.0;
};

/// Rank 0 holds one connection to every other rank; the others hold one to rank 0. Every call
/// is collective in the sense that the matching call must happen on the peer, in the same order.
class StarNetwork {
 public:
  /// Connects the group (rank 0 accepts size-1 peers; the others retry connecting until
  /// timeout_s). Throws IoError naming the address, the rank and what went wrong.
  explicit StarNetwork(const StarOptions& opt);
  ~StarNetwork();
  StarNetwork(const StarNetwork&) = delete;
  StarNetwork& operator=(const StarNetwork&) = delete;

  int rank() const { return opt_.rank; }
  int size() const { return opt_.size; }
  const StarOptions& options() const { return opt_; }

  /// Sends `n` bytes to `peer` (rank 0: any other rank; others: only 0).
  void send(int peer, const void* data, size_t n);
  /// Receives exactly `n` bytes from `peer`; throws IoError when the peer sends another size
  /// (collectives called in different orders), closes the connection (it died) or is silent
  /// past the timeout.
  void recv(int peer, void* data, size_t n);
  /// Rank 0's `n` bytes at `data` copied to every rank's `data`.
  void broadcast(void* data, size_t n);
  /// Every rank waits until all ranks have arrived.
  void barrier();

 private:
  int fd_of(int peer) const;
  StarOptions opt_;
  std::vector<int> fds_;  // by rank; -1 for self (and for non-zero peers on ranks > 0)
};

}  // namespace ingot::util
