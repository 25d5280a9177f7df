// Read-only memory-mapped files (weights are mmapped and paged in lazily, DESIGN.md §2). The
// mapping lives as long as the MappedFile; share it with std::shared_ptr to tie it to arrays.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace ingot {

/// How the kernel should treat a mapping's pages.
struct MmapOptions {
  /// Ask for transparent huge pages (MADV_HUGEPAGE; ignored where unsupported).
  bool huge_pages = true;
  /// Start reading the whole file ahead (MADV_WILLNEED); off: pages come in on first touch.
  bool will_need = false;
  /// Pages will be read in order (MADV_SEQUENTIAL) rather than at random.
  bool sequential = false;
};

/// A whole file mapped read-only. Throws IoError naming the path when it cannot be opened,
/// is not a regular file or cannot be mapped. An empty file has size 0 and a null data().
class MappedFile {
 public:
  /// Maps `path`; throws IoError "[mmap] <path>: <reason>".
  static std::shared_ptr<MappedFile> open(const std::string& path, const MmapOptions& opts = {});
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  /// Hints that bytes [offset, offset + n) will be needed soon (MADV_WILLNEED).
  void will_need(size_t offset, size_t n) const;
  /// Reads one byte of every page so that the whole file is resident; returns a checksum so the
  /// reads cannot be optimised away (for benchmarks and warm-up).
  uint64_t touch_all_pages() const;

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace ingot
