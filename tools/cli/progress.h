// A one-line progress bar on stderr for long batch commands (classify, embed): items done,
// items/s and ETA, redrawn at most about ten times a second.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace ingot::cli {

/// Progress of `total` items; draws nothing unless enabled (stderr a terminal, or --progress).
class ProgressBar {
 public:
  ProgressBar(int64_t total, bool enabled, std::string label = "");
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  /// Records `done` items; redraws when ~0.1 s passed since the last draw (or all are done).
  void update(int64_t done);
  /// Draws the final state and ends the line (idempotent; also done by the destructor).
  void finish();
  /// The line drawn for `done` of `total` items after `seconds`.
  static std::string render(int64_t done, int64_t total, double seconds,
                            const std::string& label = "");

 private:
  void draw();
  using Clock = std::chrono::steady_clock;
  int64_t total_;
  bool enabled_;
  std::string label_;
  int64_t done_ = 0;
  bool finished_ = false;
  Clock::time_point start_;
  Clock::time_point last_draw_;
  bool drawn_ = false;
  int64_t drawn_done_ = -1;  // `done` of the last draw
  size_t last_len_ = 0;      // length of the last line drawn
};

}  // namespace ingot::cli
