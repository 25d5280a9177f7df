// TCP star transport (see net.h).
#include "util/net.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <thread>

#include "util/error.h"

namespace ingot::util {

namespace {

constexpr uint32_t kMagic = 0x494e4744;  // "INGD"

/// Handshake of a connecting rank and rank 0's answer.
struct Hello {
  uint32_t magic;
  int32_t rank;
  int32_t size;
  int32_t status;  // answer: 0 accepted, 1 size differs, 2 rank taken or out of range
};

/// Header before every message: its length, to catch collectives called in different orders.
struct Header {
  uint32_t magic;
  uint32_t reserved;
  uint64_t bytes;
};

using Clock = std::chrono::steady_clock;

std::string err_text(int e) {
  return std::strerror(e);
}

/// Milliseconds left before `deadline` (0 once passed).
int millis_left(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(std::min<int64_t>(left.count(), 1 << 30)) : 0;
}

Clock::time_point deadline_after(double seconds) {
  return Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(std::ceil(seconds * 1e3)));
}

void set_options(int fd, double timeout_s) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout_s);
  tv.tv_usec = static_cast<suseconds_t>((timeout_s - static_cast<double>(tv.tv_sec)) * 1e6);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/// Writes all bytes or throws IoError naming `who`.
void write_all(int fd, const void* data, size_t n, const std::string& who) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK)
        raise<IoError>("[dist] timed out sending to {} (it stopped reading: is it stuck?)", who);
      raise<IoError>("[dist] sending to {} failed: {} (did it exit?)", who, err_text(errno));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
}

/// Reads exactly n bytes before `deadline` or throws IoError naming `who`.
void read_all(int fd, void* data, size_t n, Clock::time_point deadline, double timeout_s,
              const std::string& who) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    pollfd pfd{fd, POLLIN, 0};
    const int r = ::poll(&pfd, 1, millis_left(deadline));
    if (r < 0) {
      if (errno == EINTR) continue;
      raise<IoError>("[dist] waiting for {} failed: {}", who, err_text(errno));
    }
    if (r == 0)
      raise<IoError>("[dist] timed out after {} s waiting for {} (INGOT_DIST_TIMEOUT)", timeout_s,
                     who);
    const ssize_t got = ::recv(fd, p, n, 0);
    if (got == 0) raise<IoError>("[dist] {} closed the connection (did it exit?)", who);
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      raise<IoError>("[dist] receiving from {} failed: {} (did it exit?)", who, err_text(errno));
    }
    p += got;
    n -= static_cast<size_t>(got);
  }
}

std::string rank_name(int r) {
  return fmt::format("rank {}", r);
}

/// The IPv4 address of host:port.
sockaddr_in resolve(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || !res)
    raise<IoError>("[dist] cannot resolve master address '{}': {} (INGOT_MASTER_ADDR)", host,
                   ::gai_strerror(rc));
  sockaddr_in a = *reinterpret_cast<const sockaddr_in*>(res->ai_addr);
  ::freeaddrinfo(res);
  a.sin_port = htons(static_cast<uint16_t>(port));
  return a;
}

}  // namespace

StarNetwork::StarNetwork(const StarOptions& opt)
    : opt_(opt), fds_(static_cast<size_t>(opt.size), -1) {
  if (opt.size < 1 || opt.rank < 0 || opt.rank >= opt.size)
    raise("[dist] rank {} is outside a group of size {}", opt.rank, opt.size);
  if (opt.master_port < 1 || opt.master_port > 65535)
    raise("[dist] master port {} is not a TCP port (INGOT_MASTER_PORT)", opt.master_port);
  if (opt.size == 1) return;
  const auto deadline = deadline_after(opt.timeout_s);
  const std::string where = fmt::format("{}:{}", opt.master_addr, opt.master_port);
  try {
    if (opt.rank == 0) {
      const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (lfd < 0) raise<IoError>("[dist] socket() failed: {}", err_text(errno));
      struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
      } closer{lfd};
      int one = 1;
      ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_ANY);
      a.sin_port = htons(static_cast<uint16_t>(opt.master_port));
      if (::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
        raise<IoError>("[dist] rank 0 cannot listen on port {}: {} (set INGOT_MASTER_PORT)",
                       opt.master_port, err_text(errno));
      if (::listen(lfd, opt.size) != 0)
        raise<IoError>("[dist] listen on port {} failed: {}", opt.master_port, err_text(errno));
      for (int joined = 1; joined < opt.size;) {
        pollfd pfd{lfd, POLLIN, 0};
        const int r = ::poll(&pfd, 1, millis_left(deadline));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
          raise<IoError>("[dist] rank 0 timed out after {} s on port {}: {} of {} ranks joined",
                         opt.timeout_s, opt.master_port, joined, opt.size);
        const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) continue;
        set_options(fd, opt.timeout_s);
        Hello h{};
        try {
          read_all(fd, &h, sizeof h, deadline, opt.timeout_s, "a joining rank");
        } catch (const IoError&) {
          ::close(fd);  // a stray connection: not one of ours
          continue;
        }
        Hello answer{kMagic, 0, opt.size, 0};
        if (h.magic != kMagic) {
          ::close(fd);
          continue;
        }
        if (h.size != opt.size)
          answer.status = 1;
        else if (h.rank <= 0 || h.rank >= opt.size || fds_[static_cast<size_t>(h.rank)] >= 0)
          answer.status = 2;
        write_all(fd, &answer, sizeof answer, rank_name(h.rank));
        if (answer.status != 0) {
          ::close(fd);
          raise<IoError>("[dist] rank {} tried to join a group of size {} as rank {} of {} ({})", 0,
                         opt.size, h.rank, h.size,
                         answer.status == 1 ? "world sizes differ" : "rank taken or out of range");
        }
        fds_[static_cast<size_t>(h.rank)] = fd;
        ++joined;
      }
    } else {
      const sockaddr_in a = resolve(opt.master_addr, opt.master_port);
      int fd = -1;
      while (true) {
        fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) raise<IoError>("[dist] socket() failed: {}", err_text(errno));
        if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0) break;
        const int e = errno;
        ::close(fd);
        fd = -1;
        if (millis_left(deadline) == 0)
          raise<IoError>("[dist] rank {} could not reach rank 0 at {} within {} s: {}", opt.rank,
                         where, opt.timeout_s, err_text(e));
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      fds_[0] = fd;
      set_options(fd, opt.timeout_s);
      Hello h{kMagic, opt.rank, opt.size, 0};
      write_all(fd, &h, sizeof h, "rank 0");
      Hello answer{};
      read_all(fd, &answer, sizeof answer, deadline, opt.timeout_s, "rank 0");
      if (answer.magic != kMagic || answer.status != 0)
        raise<IoError>("[dist] rank 0 at {} refused rank {} of {}: {}", where, opt.rank, opt.size,
                       answer.status == 1 ? fmt::format("its group has size {}", answer.size)
                                          : "the rank is taken or out of range");
    }
  } catch (...) {
    for (int& fd : fds_)
      if (fd >= 0) ::close(fd);
    throw;
  }
}

StarNetwork::~StarNetwork() {
  for (int fd : fds_)
    if (fd >= 0) ::close(fd);
}

int StarNetwork::fd_of(int peer) const {
  if (peer < 0 || peer >= opt_.size || peer == opt_.rank || (opt_.rank != 0 && peer != 0))
    raise("[dist] rank {} has no connection to rank {}", opt_.rank, peer);
  return fds_[static_cast<size_t>(peer)];
}

void StarNetwork::send(int peer, const void* data, size_t n) {
  const int fd = fd_of(peer);
  const Header h{kMagic, 0, static_cast<uint64_t>(n)};
  write_all(fd, &h, sizeof h, rank_name(peer));
  if (n) write_all(fd, data, n, rank_name(peer));
}

void StarNetwork::recv(int peer, void* data, size_t n) {
  const int fd = fd_of(peer);
  const auto deadline = deadline_after(opt_.timeout_s);
  Header h{};
  read_all(fd, &h, sizeof h, deadline, opt_.timeout_s, rank_name(peer));
  if (h.magic != kMagic)
    raise<IoError>("[dist] garbled message from rank {} (not an ingot peer?)", peer);
  if (h.bytes != n)
    raise<IoError>(
        "[dist] rank {} sent {} bytes where rank {} expected {} (collectives called in a "
        "different order or with different shapes on the ranks?)",
        peer, h.bytes, opt_.rank, n);
  if (n) read_all(fd, data, n, deadline, opt_.timeout_s, rank_name(peer));
}

void StarNetwork::broadcast(void* data, size_t n) {
  if (opt_.size == 1) return;
  if (opt_.rank == 0) {
    for (int r = 1; r < opt_.size; ++r) send(r, data, n);
  } else {
    recv(0, data, n);
  }
}

void StarNetwork::barrier() {
  if (opt_.size == 1) return;
  uint8_t token = 1;
  if (opt_.rank == 0) {
    for (int r = 1; r < opt_.size; ++r) recv(r, &token, 1);
    for (int r = 1; r < opt_.size; ++r) send(r, &token, 1);
  } else {
    send(0, &token, 1);
    recv(0, &token, 1);
  }
}

}  // namespace ingot::util
