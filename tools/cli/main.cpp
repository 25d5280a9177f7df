// The `ingot` command-line tool: dispatches to the registered subcommands (DESIGN.md §6b).
// Exit codes: 0 success, 1 bad input or failed operation, 2 usage error.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include "command.h"
#include "launch.h"
#include "util/error.h"

namespace ingot::cli {
std::vector<Command>& commands() {
  static std::vector<Command> c;
  return c;
}

namespace {

/// Edit distance (insertions, deletions, substitutions, adjacent swaps count 1).
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min(
          {d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

/// "error: unknown command 'geneate'. Did you mean 'generate'?" plus the command list (exit 2).
/// `parent` is "" for the top level, or "tokenizer " for the subcommands of `ingot tokenizer`.
int unknown_command(const std::string& word, const std::vector<std::string>& names,
                    const std::string& parent = "") {
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& n : names) {
    size_t d = edit_distance(word, n);
    if (n.rfind(word, 0) == 0 && word.size() >= 2) d = std::min<size_t>(d, 1);  // a prefix
    if (d < best_d) {
      best_d = d;
      best = n;
    }
  }
  std::fprintf(stderr, "error: unknown command '%s%s'.", parent.c_str(), word.c_str());
  if (best_d <= std::max<size_t>(2, word.size() / 3))
    std::fprintf(stderr, " Did you mean '%s%s'?", parent.c_str(), best.c_str());
  std::fprintf(stderr, "\nCommands:");
  for (const auto& n : names) std::fprintf(stderr, " %s%s", parent.c_str(), n.c_str());
  std::fprintf(stderr, "\nRun 'ingot %s--help' for what each does.\n", parent.c_str());
  return 2;
}

}  // namespace
}  // namespace ingot::cli

int main(int argc, char** argv) {
  using namespace ingot::cli;
  CLI::App app{"ingot: run, score and fine-tune transformer checkpoints on CPUs and GPUs", "ingot"};
  app.require_subcommand(1);
  auto& cmds = commands();
  std::sort(cmds.begin(), cmds.end(), [](auto& a, auto& b) { return a.name < b.name; });
  std::map<CLI::App*, std::function<int()>> runners;
  for (auto& c : cmds) {
    CLI::App* sub = app.add_subcommand(c.name, c.description);
    runners[sub] = c.setup(*sub);
  }
  // `--tp N` outside a group: the command runs as N ranks under the launcher.
  if (auto rc = relaunch_for_tp(argc, argv)) return *rc;
  if (argc == 1) {  // `ingot` alone: what it can do
    std::printf("%s", app.help().c_str());
    return 0;
  }
  if (argv[1][0] != '-' &&
      std::none_of(cmds.begin(), cmds.end(), [&](const Command& c) { return c.name == argv[1]; })) {
    std::vector<std::string> names;
    for (const auto& c : cmds) names.push_back(c.name);
    return unknown_command(argv[1], names);
  }
  // A command with subcommands of its own (`ingot tokenizer`): alone, it lists them; an unknown
  // word after it is named and the nearest subcommand suggested, as at the top level.
  if (argv[1][0] != '-') {
    CLI::App* sub = app.get_subcommand(argv[1]);
    auto subs = sub->get_subcommands([](CLI::App*) { return true; });
    if (!subs.empty()) {
      if (argc == 2) {
        std::printf("%s", sub->help().c_str());
        return 0;
      }
      std::vector<std::string> names;
      for (CLI::App* s : subs) names.push_back(s->get_name());
      if (argv[2][0] != '-' && std::find(names.begin(), names.end(), argv[2]) == names.end())
        return unknown_command(argv[2], names, std::string(argv[1]) + " ");
    }
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
