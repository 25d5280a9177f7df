// The `ingot` command-line tool: dispatches to the registered subcommands (DESIGN.md §6b).
// Exit codes: 0 success, 1 bad input or failed operation, 2 usage error.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <map>

#include "command.h"
#include "util/error.h"

namespace ingot::cli {
std::vector<Command>& commands() {
  static std::vector<Command> c;
  return c;
}
}  // namespace ingot::cli

int main(int argc, char** argv) {
  using namespace ingot::cli;
  CLI::App app{"ingot: run, score and fine-tune transformer checkpoints on CPUs and GPUs"};
  app.require_subcommand(1);
  auto& cmds = commands();
  std::sort(cmds.begin(), cmds.end(), [](auto& a, auto& b) { return a.name < b.name; });
  std::map<CLI::App*, std::function<int()>> runners;
  for (auto& c : cmds) {
    CLI::App* sub = app.add_subcommand(c.name, c.description);
    runners[sub] = c.setup(*sub);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  try {
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
  } catch (const ingot::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 2;
}
