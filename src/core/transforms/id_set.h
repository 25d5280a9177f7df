// Internal to core/transforms: a flat set of node ids for the graph walks.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace ingot::detail {

/// A set of node ids (or primitive addresses) for the graph walks of eval and autodiff: open
/// addressing over (id, generation) slots, a slot of an older generation counting as empty, so
/// clear() is O(1) and an insert allocates nothing (the table doubles when half full).
class IdSet {
 public:
  void clear() {
    if (++gen_ == 0) {  // wrapped: forget every slot for real
      std::fill(slots_.begin(), slots_.end(), Slot{});
      gen_ = 1;
    }
    count_ = 0;
  }
  /// Inserts id; false when it was present.
  bool insert(uintptr_t id) {
    if ((count_ + 1) * 2 > slots_.size()) grow();
    const size_t mask = slots_.size() - 1;
    for (size_t i = mix(id) & mask;; i = (i + 1) & mask) {
      Slot& s = slots_[i];
      if (s.gen != gen_) {
        s = {id, gen_};
        ++count_;
        return true;
      }
      if (s.id == id) return false;
    }
  }
  bool contains(uintptr_t id) const {
    if (slots_.empty()) return false;
    const size_t mask = slots_.size() - 1;
    for (size_t i = mix(id) & mask;; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.gen != gen_) return false;
      if (s.id == id) return true;
    }
  }
  size_t capacity() const { return slots_.size(); }
  void release() {
    slots_.clear();
    slots_.shrink_to_fit();
    count_ = 0;
  }

 private:
  struct Slot {
    uintptr_t id = 0;
    uint32_t gen = 0;
  };
  static size_t mix(uintptr_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return static_cast<size_t>(x);
  }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    const uint32_t g = gen_;
    slots_.assign(std::max<size_t>(256, old.size() * 2), Slot{});
    count_ = 0;
    for (const Slot& s : old)
      if (s.gen == g) insert(s.id);
  }
  std::vector<Slot> slots_;
  size_t count_ = 0;
  uint32_t gen_ = 1;
};

}  // namespace ingot::detail
