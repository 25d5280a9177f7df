// Subcommand registry of the `ingot` binary: each cmd_*.cpp registers itself with a static
// Registrar, so adding a command touches no shared file.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace ingot::cli {

/// A subcommand: `setup` adds options to its CLI::App and returns the function to run
/// (returning the process exit code).
struct Command {
  std::string name;
  std::string description;
  std::function<std::function<int()>(CLI::App&)> setup;
};

std::vector<Command>& commands();

/// Registers a command at static-initialisation time.
struct Registrar {
  explicit Registrar(Command c) { commands().push_back(std::move(c)); }
};

}  // namespace ingot::cli
