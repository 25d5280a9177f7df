// `ingot dist-check`: checks a multi-process group (run it under `ingot launch`): every rank
// sums and gathers known values, rank 0 prints the results and, with --mb, times all_sum on
// buffers of that size (the all-reduce bus bandwidth, as NCCL's tests define it).
#include <chrono>
#include <cstdio>
#include <stdexcept>

#include "command.h"
#include "core/dist/ops.h"
#include "core/ingot.h"
#include "llm_common.h"

namespace ingot::cli {
namespace {

struct DistCheckArgs {
  std::string device;
  double mb = 0;
  int iters = 20;
  int fail_rank = -1;
};

int run_dist_check(const DistCheckArgs& a) {
  const Device dev = select_device(a.device);
  auto g = dist::world();
  const int rank = g->rank(), size = g->size();
  if (rank == a.fail_rank) raise("[dist-check] rank {} fails on purpose (--fail-rank)", rank);
  // sum over ranks of (rank + 1) * [1, 2, 3] in float32 and bfloat16; gather of the ranks.
  const Array base({1.f, 2.f, 3.f});
  const Array mine = to_device(base * Array(static_cast<float>(rank + 1)), dev);
  const auto f32 = dist::all_sum(mine, g).to_vector<double>();
  const auto bf16 = dist::all_sum(astype(mine, bfloat16), g).to_vector<double>();
  const auto ranks = dist::all_gather(to_device(Array({rank}, int32), dev), 0, g).to_vector<int>();
  const double tri = size * (size + 1) / 2.0;
  bool ok = true;
  for (int i = 0; i < 3; ++i) ok &= f32[i] == tri * (i + 1) && bf16[i] == tri * (i + 1);
  for (int r = 0; r < size; ++r) ok &= ranks[static_cast<size_t>(r)] == r;
  std::string timing;
  if (a.mb > 0) {
    const int64_t n = static_cast<int64_t>(a.mb * 1e6 / 2);  // bfloat16 elements
    Array x = ones({n}, bfloat16, dev);
    x.eval();
    dist::all_sum(x, g).eval();  // warm-up (communicator set-up)
    synchronize(dev);
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < a.iters; ++i) dist::all_sum(x, g).eval();
    synchronize(dev);
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / a.iters;
    const double bytes = static_cast<double>(n) * 2;
    timing = fmt::format(
        ", \"all_sum_mb\": {:.1f}, \"all_sum_ms\": {:.3f}, \"algo_gb_s\": {:.2f}, "
        "\"bus_gb_s\": {:.2f}",
        bytes / 1e6, s * 1e3, bytes / s / 1e9, bytes / s / 1e9 * 2.0 * (size - 1) / size);
  }
  std::printf(
      "{\"world_size\": %d, \"device\": \"%s\", \"sum_f32\": [%g, %g, %g], \"sum_bf16\": [%g, "
      "%g, %g], \"gathered_ranks\": %d, \"ok\": %s%s}\n",
      size, dev.str().c_str(), f32[0], f32[1], f32[2], bf16[0], bf16[1], bf16[2], size,
      ok ? "true" : "false", timing.c_str());
  return ok ? 0 : 1;
}

const Registrar reg({"dist-check", "Check the collectives of a multi-process group",
                     [](CLI::App& app) {
                       auto a = std::make_shared<DistCheckArgs>();
                       add_device_option(app, a->device);
                       app.add_option("--mb", a->mb, "Also time all_sum on this many MB (bf16)");
                       app.add_option("--iters", a->iters, "Timed all_sum calls (default 20)");
                       app.add_option("--fail-rank", a->fail_rank,
                                      "Make this rank fail (to test the launcher)");
                       app.footer(
                           "Examples:\n  ingot launch --nproc 2 -- dist-check\n"
                           "  ingot launch --nproc 2 -- dist-check --device cuda --mb 256");
                       return std::function<int()>([a] { return run_dist_check(*a); });
                     }});

}  // namespace
}  // namespace ingot::cli
