// `ingot lora`: LoRA fine-tuning commands, `ingot lora train` (cmd_train.cpp) and
// `ingot lora fuse` (cmd_fuse.cpp), which register themselves in lora_commands(). `ingot fuse`
// stays as the same command under its earlier name (`ingot train` is pretraining now).
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "command.h"

namespace ingot::cli {

std::vector<Command>& lora_commands() {
  static std::vector<Command> c;
  return c;
}

namespace {

const Registrar reg{
    Command{"lora",
            "LoRA fine-tuning: `ingot lora train` (an adapter on JSONL data, or every weight with "
            "--full), `ingot lora fuse` (merge an adapter into a full checkpoint)",
            [](CLI::App& app) -> std::function<int()> {
              app.require_subcommand(1);
              auto& subs = lora_commands();
              std::sort(subs.begin(), subs.end(), [](auto& x, auto& y) { return x.name < y.name; });
              auto runners = std::make_shared<std::map<CLI::App*, std::function<int()>>>();
              for (auto& c : subs) {
                CLI::App* sub = app.add_subcommand(c.name, c.description);
                (*runners)[sub] = c.setup(*sub);
              }
              app.footer(
                  "Example: ingot lora train --model ./Qwen3-0.6B --data data/ --iters 200 "
                  "--mask-prompt --out ./my-adapter\n"
                  "Example: ingot lora fuse --model ./Qwen3-0.6B --adapter ./my-adapter --out "
                  "./Qwen3-0.6B-tuned");
              return [runners] {
                for (auto& [sub, run] : *runners)
                  if (sub->parsed()) return run();
                return 2;
              };
            }}};

}  // namespace
}  // namespace ingot::cli
