// Worker process of test_distributed: joins the group from INGOT_* variables, runs one
// scenario and writes what it computed to <dir>/rank<R>_<name>.txt (one value per line) for
// the test to check. Exit 0 on success, 7 when the group cannot form, 5 when an expected error
// did not happen.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "core/dist/ops.h"
#include "core/ops/ops.h"
#include "core/transforms/autodiff.h"
#include "dist_worker.h"
#include "util/error.h"

using namespace ingot;

namespace {

std::string g_dir;
int g_rank = 0;

void write(const std::string& name, const Array& a) {
  std::ofstream f(g_dir + "/rank" + std::to_string(g_rank) + "_" + name + ".txt");
  f.precision(17);
  for (double v : a.to_vector<double>()) f << v << "\n";
}

void write_text(const std::string& name, const std::string& text) {
  std::ofstream f(g_dir + "/rank" + std::to_string(g_rank) + "_" + name + ".txt");
  f << text;
}

Array input(int r, const Shape& shape, Dtype t) {
  std::vector<double> v(static_cast<size_t>(shape_size(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = test::dist_value(r, static_cast<int64_t>(i));
  return Array(v, shape, t);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  const std::string scenario = argv[1];
  g_dir = argv[2];
  std::shared_ptr<dist::Group> g;
  try {
    g = std::make_shared<dist::Group>(dist::Group::options_from_env());
  } catch (const Error& e) {
    g_rank = std::atoi(std::getenv("INGOT_RANK"));
    write_text("error", e.what());
    return 7;
  }
  const int r = g_rank = g->rank();
  if (scenario == "sum") {
    for (Dtype t : {float32, float64, bfloat16, float16, int32})
      write("sum_" + std::string(dtype_name(t)), dist::all_sum(input(r, {3, 5, 7}, t), g));
    // A transposed view: summed in its logical (row-major) order.
    write("sum_view", dist::all_sum(transpose(input(r, {5, 7}, float32)), g));
  } else if (scenario == "gather") {
    write("gather0", dist::all_gather(input(r, {2, 3}, float32), 0, g));
    write("gather1", dist::all_gather(input(r, {2, 3}, float32), 1, g));
    write("gather_last", dist::all_gather(input(r, {2, 3, 2}, bfloat16), -1, g));
  } else if (scenario == "grad") {
    const int n = g->size();
    std::vector<float> w(static_cast<size_t>(4 * n));
    for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i + 1);
    const Array wa(w, {4 * n}), w4({0.5f, -1.0f, 2.0f, 3.0f});
    const Array x = input(r, {4}, float32);
    auto gathered = [&](const Array& a) { return sum(dist::all_gather(a, 0, g) * wa); };
    auto summed = [&](const Array& a) { return sum(dist::all_sum(a, g) * w4); };
    write("grad_gather", grad(gathered)(x));
    write("grad_sum", grad(summed)(x));
  } else if (scenario == "cuda") {  // NCCL: rank r on cuda:r (one GPU per rank)
    const Device d{Device::Type::cuda, r};
    for (Dtype t : {float32, bfloat16})
      write("cuda_sum_" + std::string(dtype_name(t)),
            dist::all_sum(to_device(input(r, {3, 5, 7}, t), d), g));
    write("cuda_gather1", dist::all_gather(to_device(input(r, {2, 3}, float32), d), 1, g));
  } else if (scenario == "die") {
    if (r == 1) std::_Exit(3);  // a rank that dies right after joining
    try {
      dist::all_sum(input(r, {8}, float32), g).eval();
    } catch (const IoError& e) {
      write_text("error", e.what());
      return 0;
    }
    return 5;
  } else if (scenario == "mismatch") {
    try {
      dist::all_sum(input(r, {2 + r}, float32), g).eval();
    } catch (const IoError& e) {
      write_text("error", e.what());
      return 0;
    }
    return 5;
  } else {
    return 2;
  }
  return 0;
}
