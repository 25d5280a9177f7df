// Test helper: runs a worker executable as the ranks of a group (one process each, with
// INGOT_RANK/INGOT_WORLD_SIZE/INGOT_MASTER_* set), waits with a watchdog that kills stragglers
// (so a hang fails the test instead of stalling it), and returns each rank's exit status.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace ingot::test {

/// The numbers a worker rank wrote to DIR/rank<R>_<NAME>.txt (empty when it wrote none).
inline std::vector<double> rank_values(const std::filesystem::path& dir, int rank,
                                       const std::string& name) {
  std::ifstream f(dir / ("rank" + std::to_string(rank) + "_" + name + ".txt"));
  std::vector<double> v;
  double x;
  while (f >> x) v.push_back(x);
  return v;
}

/// The text a worker rank wrote to DIR/rank<R>_<NAME>.txt (empty when it wrote none).
inline std::string rank_text(const std::filesystem::path& dir, int rank, const std::string& name) {
  std::ifstream f(dir / ("rank" + std::to_string(rank) + "_" + name + ".txt"));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// A TCP port that was free a moment ago (bound to port 0, then released).
inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

struct SpawnResult {
  bool spawned = false;         ///< false: processes cannot be spawned here (skip)
  std::vector<int> exit_codes;  ///< per rank; -signal when killed
  bool timed_out = false;       ///< the watchdog killed a rank
};

/// Runs `exe args...` as ranks `ranks` (default all of 0..size-1) of a group of `size` on
/// 127.0.0.1:port, with `env` ("K=V") added; waits at most `watchdog_s` seconds.
inline SpawnResult spawn_group(const std::string& exe, const std::vector<std::string>& args,
                               int size, int port, const std::vector<std::string>& env = {},
                               std::vector<int> ranks = {}, double watchdog_s = 120) {
  SpawnResult res;
  if (ranks.empty())
    for (int r = 0; r < size; ++r) ranks.push_back(r);
  std::vector<pid_t> pids;
  for (int r : ranks) {
    std::vector<std::string> envs;
    for (char** e = environ; *e; ++e)
      if (std::strncmp(*e, "INGOT_RANK=", 11) && std::strncmp(*e, "INGOT_WORLD_SIZE=", 17) &&
          std::strncmp(*e, "INGOT_MASTER_", 13))
        envs.emplace_back(*e);
    envs.push_back("INGOT_RANK=" + std::to_string(r));
    envs.push_back("INGOT_WORLD_SIZE=" + std::to_string(size));
    envs.push_back("INGOT_MASTER_ADDR=127.0.0.1");
    envs.push_back("INGOT_MASTER_PORT=" + std::to_string(port));
    for (const auto& e : env) envs.push_back(e);
    std::vector<char*> envp, argv;
    for (auto& e : envs) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string exe_copy = exe;
    std::vector<std::string> args_copy = args;
    argv.push_back(exe_copy.data());
    for (auto& a : args_copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    if (::posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv.data(), envp.data()) != 0) {
      for (pid_t p : pids) ::kill(p, SIGKILL);
      for (pid_t p : pids) ::waitpid(p, nullptr, 0);
      return res;
    }
    pids.push_back(pid);
  }
  res.spawned = true;
  res.exit_codes.assign(pids.size(), 0);
  std::vector<bool> done(pids.size(), false);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(static_cast<int>(watchdog_s * 1e3));
  size_t left = pids.size();
  while (left > 0) {
    for (size_t i = 0; i < pids.size(); ++i) {
      if (done[i]) continue;
      int status = 0;
      if (::waitpid(pids[i], &status, WNOHANG) == pids[i]) {
        done[i] = true;
        --left;
        res.exit_codes[i] = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
      }
    }
    if (left == 0) break;
    if (std::chrono::steady_clock::now() > deadline) {
      res.timed_out = true;
      for (size_t i = 0; i < pids.size(); ++i)
        if (!done[i]) ::kill(pids[i], SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return res;
}

}  // namespace ingot::test
