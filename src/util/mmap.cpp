// MappedFile: open + fstat + mmap(PROT_READ, MAP_PRIVATE) with madvise hints; munmap on
// destruction.
#include "util/mmap.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "util/error.h"

namespace ingot {

namespace {
constexpr size_t kPage = 4096;

[[noreturn]] void fail(const std::string& path, const char* what, int err) {
  raise<IoError>("[mmap] {}: {} ({})", path, what, std::strerror(err));
}
}  // namespace

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path, const MmapOptions& opts) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, "cannot open", errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail(path, "cannot stat", e);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    raise<IoError>("[mmap] {}: not a regular file", path);
  }
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->path_ = path;
  m->size_ = static_cast<size_t>(st.st_size);
  if (m->size_ > 0) {
    void* p = ::mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail(path, "cannot map", e);
    }
    m->data_ = static_cast<const uint8_t*>(p);
#ifdef MADV_HUGEPAGE
    if (opts.huge_pages) ::madvise(p, m->size_, MADV_HUGEPAGE);  // a hint: failure is harmless
#endif
    if (opts.sequential) ::madvise(p, m->size_, MADV_SEQUENTIAL);
    if (opts.will_need) ::madvise(p, m->size_, MADV_WILLNEED);
  }
  ::close(fd);  // the mapping keeps the file alive
  return m;
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void MappedFile::will_need(size_t offset, size_t n) const {
  if (!data_ || offset >= size_) return;
  size_t start = offset / kPage * kPage;
  size_t end = std::min(size_, offset + n);
  ::madvise(const_cast<uint8_t*>(data_) + start, end - start, MADV_WILLNEED);
}

uint64_t MappedFile::touch_all_pages() const {
  uint64_t sum = 0;
  for (size_t i = 0; i < size_; i += kPage) sum += data_[i];
  return sum;
}

}  // namespace ingot
