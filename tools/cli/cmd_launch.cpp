// `ingot launch`: runs an ingot subcommand as the N ranks of a group on this host (one process
// per GPU: rank i sees only GPU i as cuda:0), or as this host's share of a multi-host group.
// Sets INGOT_RANK/INGOT_WORLD_SIZE/INGOT_LOCAL_RANK/INGOT_MASTER_ADDR/INGOT_MASTER_PORT and
// NCCL_NVLS_ENABLE=0; forwards rank 0's stdout and every rank's stderr ("[rank i] " prefixed
// for i > 0); when one rank fails it stops the others and exits with an error.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "command.h"
#include "core/device.h"
#include "launch.h"
#include "util/env.h"
#include "util/error.h"

extern char** environ;

namespace ingot::cli {
namespace {

struct LaunchArgs {
  int nproc = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 0;  // 0: a free port (single host only)
  std::string gpus;     // "0,1": GPU of each local rank; default: CUDA_VISIBLE_DEVICES or 0..N-1
  bool no_gpu_binding = false;
  std::vector<std::string> command;
};

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> r;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = s.find(',', start);
    std::string item = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!item.empty()) r.push_back(item);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return r;
}

int pick_free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    raise<IoError>("[launch] cannot find a free TCP port: {}", std::strerror(errno));
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string self_exe() {
  std::vector<char> buf(4096);
  const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) raise<IoError>("[launch] cannot find the ingot binary (/proc/self/exe)");
  return std::string(buf.data(), static_cast<size_t>(n));
}

/// One running rank: its pid, its stderr pipe (ranks > 0) and what is left of a partial line,
/// its stdin pipe and the bytes of our stdin not yet written to it.
struct Rank {
  int rank = 0;
  pid_t pid = -1;
  int err_fd = -1;
  std::string pending;
  int in_fd = -1;
  std::string to_write;
  bool done = false;
  int code = 0;  // exit code, or 128 + signal
};

/// Writes the complete lines of r.pending (all of it when `flush`) to stderr, prefixed.
void emit(Rank& r, bool flush) {
  size_t nl;
  while ((nl = r.pending.find('\n')) != std::string::npos || (flush && !r.pending.empty())) {
    const size_t n = nl == std::string::npos ? r.pending.size() : nl + 1;
    std::string line = "[rank " + std::to_string(r.rank) + "] " + r.pending.substr(0, n);
    if (line.back() != '\n') line += '\n';
    std::fwrite(line.data(), 1, line.size(), stderr);
    r.pending.erase(0, n);
  }
}

/// Reads what is available on r's stderr pipe; closes it at end of file.
void drain(Rank& r) {
  char buf[4096];
  while (r.err_fd >= 0) {
    const ssize_t n = ::read(r.err_fd, buf, sizeof buf);
    if (n > 0) {
      r.pending.append(buf, static_cast<size_t>(n));
      emit(r, false);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    ::close(r.err_fd);
    r.err_fd = -1;
    emit(r, true);
  }
}

int run_launch(const LaunchArgs& a) {
  ::signal(SIGPIPE, SIG_IGN);  // a rank that exits while we write its stdin is not our death
  if (a.nproc < 1) raise("[launch] --nproc must be at least 1, got {}", a.nproc);
  if (a.nnodes < 1 || a.node_rank < 0 || a.node_rank >= a.nnodes)
    raise("[launch] --node-rank {} is outside --nnodes {}", a.node_rank, a.nnodes);
  if (a.command.empty()) raise("[launch] no command: ingot launch --nproc N -- SUBCOMMAND ...");
  if (a.command[0] == "launch") raise("[launch] cannot launch `ingot launch` itself");
  if (a.nnodes > 1 && a.master_port == 0)
    raise("[launch] several hosts need --master-port (the same on every host)");
  const int port = a.master_port ? a.master_port : pick_free_port();
  const int world = a.nproc * a.nnodes;
  // GPU binding: rank i gets the i-th GPU of --gpus, else of CUDA_VISIBLE_DEVICES, else GPU i
  // (when the machine has GPUs; a CPU-only machine runs the ranks unbound).
  std::vector<std::string> gpus = split_commas(a.gpus);
  if (gpus.empty())
    if (auto v = env::get("CUDA_VISIBLE_DEVICES")) gpus = split_commas(*v);
  if (gpus.empty())
    for (int i = 0; i < gpu::device_count(); ++i) gpus.push_back(std::to_string(i));
  // INGOT_DEVICE=cpu: the ranks compute on the CPU, whatever GPUs the machine has.
  const bool cpu_only = env::device() && *env::device() == "cpu";
  const bool bind = !a.no_gpu_binding && !cpu_only && !gpus.empty();
  if (bind && static_cast<int>(gpus.size()) < a.nproc)
    raise(
        "[launch] {} ranks on this host but {} GPU(s) to bind them to ({}); pass --gpus or "
        "--no-gpu-binding",
        a.nproc, gpus.size(), gpus.size() ? fmt::format("{}", fmt::join(gpus, ",")) : "none");

  const std::string exe = self_exe();
  std::vector<Rank> ranks(static_cast<size_t>(a.nproc));
  auto stop_all = [&](int sig) {
    for (auto& r : ranks)
      if (r.pid > 0 && !r.done) ::kill(r.pid, sig);
  };
  for (int i = 0; i < a.nproc; ++i) {
    Rank& r = ranks[static_cast<size_t>(i)];
    r.rank = a.node_rank * a.nproc + i;
    std::vector<std::string> envs;
    const char* ours[] = {"INGOT_RANK=", "INGOT_WORLD_SIZE=", "INGOT_LOCAL_RANK=",
                          "INGOT_MASTER_ADDR=", "INGOT_MASTER_PORT="};
    auto starts = [](const char* e, const char* p) {
      return std::strncmp(e, p, std::strlen(p)) == 0;
    };
    bool nvls_set = false;
    for (char** e = environ; *e; ++e) {
      bool skip = bind && starts(*e, "CUDA_VISIBLE_DEVICES=");
      for (const char* p : ours) skip |= starts(*e, p);
      if (skip) continue;
      nvls_set |= starts(*e, "NCCL_NVLS_ENABLE=");
      envs.emplace_back(*e);
    }
    envs.push_back(fmt::format("INGOT_RANK={}", r.rank));
    envs.push_back(fmt::format("INGOT_WORLD_SIZE={}", world));
    envs.push_back(fmt::format("INGOT_LOCAL_RANK={}", i));
    envs.push_back("INGOT_MASTER_ADDR=" + a.master_addr);
    envs.push_back(fmt::format("INGOT_MASTER_PORT={}", port));
    if (!nvls_set) envs.push_back("NCCL_NVLS_ENABLE=0");  // NVLink multicast stays off
    if (bind) envs.push_back("CUDA_VISIBLE_DEVICES=" + gpus[static_cast<size_t>(i)]);
    std::vector<char*> envp, argv;
    for (auto& e : envs) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> args{exe};
    args.insert(args.end(), a.command.begin(), a.command.end());
    for (auto& s : args) argv.push_back(s.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    // Every rank reads the same stdin (a prompt, a JSONL file): the launcher copies its own to
    // each rank's pipe.
    int in_fds[2] = {-1, -1};
    if (::pipe2(in_fds, O_CLOEXEC) != 0)
      raise<IoError>("[launch] pipe failed: {}", std::strerror(errno));
    posix_spawn_file_actions_adddup2(&fa, in_fds[0], STDIN_FILENO);
    int pipe_fds[2] = {-1, -1};
    if (i > 0) {  // stdout of ranks > 0 is dropped; stderr comes through a pipe, prefixed
      posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
      if (::pipe2(pipe_fds, O_CLOEXEC) != 0)
        raise<IoError>("[launch] pipe failed: {}", std::strerror(errno));
      posix_spawn_file_actions_adddup2(&fa, pipe_fds[1], STDERR_FILENO);
    }
    const int rc = ::posix_spawn(&r.pid, exe.c_str(), &fa, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    if (pipe_fds[1] >= 0) ::close(pipe_fds[1]);
    ::close(in_fds[0]);
    r.in_fd = in_fds[1];
    ::fcntl(r.in_fd, F_SETFL, ::fcntl(r.in_fd, F_GETFL) | O_NONBLOCK);
    if (rc != 0) {
      if (pipe_fds[0] >= 0) ::close(pipe_fds[0]);
      ::close(r.in_fd);
      r.pid = -1;
      stop_all(SIGKILL);
      for (auto& o : ranks)
        if (o.pid > 0) ::waitpid(o.pid, nullptr, 0);
      raise<IoError>("[launch] cannot start rank {}: {}", r.rank, std::strerror(rc));
    }
    if (pipe_fds[0] >= 0) {
      r.err_fd = pipe_fds[0];
      ::fcntl(r.err_fd, F_SETFL, ::fcntl(r.err_fd, F_GETFL) | O_NONBLOCK);
    }
  }

  // Wait for every rank, forwarding stderr; the first failure stops the others (SIGTERM after
  // a second in which the peers it took down with it exit too, so that the rank at fault is
  // among those named; SIGKILL 5 s later), so a dead rank never leaves the rest blocked.
  std::vector<const Rank*> failed;  // ranks that failed before the others were stopped
  bool stopping = false;
  std::chrono::steady_clock::time_point term_at{}, kill_at{};
  size_t left = ranks.size();
  bool stdin_open = true;
  constexpr size_t kMaxBuffered = 1 << 20;  // stop reading stdin while a rank lags this much
  auto close_in = [](Rank& r) {
    if (r.in_fd >= 0) ::close(r.in_fd);
    r.in_fd = -1;
    r.to_write.clear();
  };
  while (left > 0) {
    std::vector<pollfd> fds;
    for (auto& r : ranks)
      if (r.err_fd >= 0) fds.push_back({r.err_fd, POLLIN, 0});
    for (auto& r : ranks)
      if (r.in_fd >= 0 && !r.to_write.empty()) fds.push_back({r.in_fd, POLLOUT, 0});
    const bool read_stdin =
        stdin_open && std::all_of(ranks.begin(), ranks.end(),
                                  [&](const Rank& r) { return r.to_write.size() < kMaxBuffered; });
    if (read_stdin) fds.push_back({STDIN_FILENO, POLLIN, 0});
    ::poll(fds.data(), fds.size(), 50);
    for (const pollfd& p : fds) {
      if (p.fd != STDIN_FILENO || !(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[65536];
      const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n > 0) {
        for (auto& r : ranks)
          if (r.in_fd >= 0) r.to_write.append(buf, static_cast<size_t>(n));
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        stdin_open = false;
      }
    }
    for (auto& r : ranks) {
      while (r.in_fd >= 0 && !r.to_write.empty()) {
        const ssize_t w = ::write(r.in_fd, r.to_write.data(), r.to_write.size());
        if (w > 0) {
          r.to_write.erase(0, static_cast<size_t>(w));
        } else {
          if (w < 0 && (errno == EAGAIN || errno == EINTR)) break;
          close_in(r);  // the rank closed its stdin or exited
        }
      }
      if (!stdin_open && r.to_write.empty() && r.in_fd >= 0) close_in(r);  // end of input
    }
    for (auto& r : ranks) drain(r);
    for (auto& r : ranks) {
      if (r.done) continue;
      int status = 0;
      if (::waitpid(r.pid, &status, WNOHANG) != r.pid) continue;
      r.done = true;
      close_in(r);
      --left;
      r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (r.code != 0 && !stopping) failed.push_back(&r);
    }
    const auto now = std::chrono::steady_clock::now();
    if (!failed.empty() && term_at == std::chrono::steady_clock::time_point{}) {
      term_at = now + std::chrono::seconds(1);
      kill_at = term_at + std::chrono::seconds(5);
    }
    if (!stopping && !failed.empty() && left > 0 && now > term_at) {
      stopping = true;
      stop_all(SIGTERM);
    }
    if (stopping && left > 0 && now > kill_at) stop_all(SIGKILL);
  }
  for (auto& r : ranks) {
    while (r.err_fd >= 0) drain(r);  // what was written before exiting
  }
  if (!failed.empty()) {
    std::string which;
    for (const Rank* r : failed)
      which += fmt::format("{}rank {} ({} {})", which.empty() ? "" : ", ", r->rank,
                           r->code > 128 ? "signal" : "exit code",
                           r->code > 128 ? r->code - 128 : r->code);
    std::fprintf(stderr, "error: [launch] %s failed%s\n", which.c_str(),
                 stopping ? "; the other ranks were stopped" : "");
    const bool usage =
        std::all_of(failed.begin(), failed.end(), [](const Rank* r) { return r->code == 2; });
    return usage ? 2 : 1;
  }
  return 0;
}

}  // namespace

std::optional<int> relaunch_for_tp(int argc, char** argv) {
  int ranks = 1;  // --tp N or --dp N (classify): N ranks
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") break;
    for (const char* flag : {"--tp", "--dp"}) {
      if (arg == flag && i + 1 < argc) ranks = std::max(ranks, std::atoi(argv[i + 1]));
      if (arg.rfind(std::string(flag) + "=", 0) == 0)
        ranks = std::max(ranks, std::atoi(arg.c_str() + 5));
    }
  }
  if (ranks <= 1 || env::get("INGOT_WORLD_SIZE")) return std::nullopt;
  LaunchArgs a;
  a.nproc = ranks;
  for (int i = 1; i < argc; ++i) a.command.emplace_back(argv[i]);
  try {
    return run_launch(a);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}

namespace {

const Registrar reg(
    {"launch", "Run a subcommand as the ranks of a multi-process (multi-GPU) group",
     [](CLI::App& app) {
       auto a = std::make_shared<LaunchArgs>();
       app.add_option("--nproc", a->nproc, "Ranks (processes) on this host, one per GPU")
           ->required();
       app.add_option("--nnodes", a->nnodes, "Hosts in the group (default 1)");
       app.add_option("--node-rank", a->node_rank,
                      "This host's index among --nnodes (ranks node_rank*nproc + i)");
       app.add_option("--master-addr", a->master_addr,
                      "Host of rank 0, reachable from every host (default 127.0.0.1)");
       app.add_option("--master-port", a->master_port,
                      "TCP port rank 0 listens on (default: a free one; required with --nnodes)");
       app.add_option("--gpus", a->gpus,
                      "GPU of each local rank, e.g. 0,1 (default: CUDA_VISIBLE_DEVICES or 0..N-1)");
       app.add_flag("--no-gpu-binding", a->no_gpu_binding,
                    "Leave CUDA_VISIBLE_DEVICES alone (every rank sees every GPU)");
       app.add_option("command", a->command, "The ingot subcommand and its arguments, after --")
           ->required();
       app.footer(
           "Each rank runs `ingot COMMAND...` with INGOT_RANK, INGOT_WORLD_SIZE, "
           "INGOT_MASTER_ADDR,\nINGOT_MASTER_PORT and NCCL_NVLS_ENABLE=0 set, and only its GPU "
           "visible (as cuda:0).\nrank 0's stdout is the output; every rank's stderr is "
           "forwarded.\nExamples:\n"
           "  ingot launch --nproc 2 -- dist-check\n"
           "  ingot launch --nproc 2 -- dist-check --device cuda --mb 256\n"
           "  # two hosts, 8 GPUs each (run on both, --node-rank 0 and 1):\n"
           "  ingot launch --nproc 8 --nnodes 2 --node-rank 0 --master-addr host0 "
           "--master-port 29500 -- dist-check");
       return std::function<int()>([a] { return run_launch(*a); });
     }});

}  // namespace
}  // namespace ingot::cli
