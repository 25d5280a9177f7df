// A one-line progress bar on stderr (see progress.h).
#include "progress.h"

#include <algorithm>
#include <cstdio>

#include <fmt/format.h>

namespace ingot::cli {
namespace {

std::string format_duration(double s) {
  if (!(s >= 0) || s > 360000) return "--:--";
  const auto t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60);
  return fmt::format("{}:{:02}", t / 60, t % 60);
}

}  // namespace

ProgressBar::ProgressBar(int64_t total, bool enabled, std::string label)
    : total_(total), enabled_(enabled), label_(std::move(label)), start_(Clock::now()) {}

ProgressBar::~ProgressBar() {
  finish();
}

void ProgressBar::update(int64_t done) {
  done_ = done;
  if (!enabled_ || finished_) return;
  const auto now = Clock::now();
  if (drawn_ && done < total_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  draw();
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  if (!enabled_) return;
  if (!drawn_ || drawn_done_ != done_) draw();
  std::fputc('\n', stderr);
  std::fflush(stderr);
}

std::string ProgressBar::render(int64_t done, int64_t total, double seconds,
                                const std::string& label) {
  constexpr int kWidth = 30;
  const double frac =
      total > 0 ? std::clamp(static_cast<double>(done) / static_cast<double>(total), 0.0, 1.0)
                : 1.0;
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(kWidth - filled), '.');
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total - done) / rate : -1.0;
  std::string out = label.empty() ? "" : label + " ";
  out += fmt::format("[{}] {}/{} {:3.0f}% {:.1f} items/s ", bar, done, total, frac * 100, rate);
  out += done >= total ? "elapsed " + format_duration(seconds) : "ETA " + format_duration(eta);
  return out;
}

void ProgressBar::draw() {
  const double secs = std::chrono::duration<double>(Clock::now() - start_).count();
  const std::string line = render(done_, total_, secs, label_);
  // Redraw in place; spaces cover the rest of a longer previous line (no terminal codes, so a
  // log file gets plain text).
  const size_t pad = last_len_ > line.size() ? last_len_ - line.size() : 0;
  std::fprintf(stderr, "\r%s%s", line.c_str(), std::string(pad, ' ').c_str());
  last_len_ = line.size();
  std::fflush(stderr);
  drawn_ = true;
  drawn_done_ = done_;
}

}  // namespace ingot::cli
