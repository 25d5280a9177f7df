// Communication groups (see group.h).
#include "core/dist/group.h"

#include "util/env.h"
#include "util/error.h"
#include "util/net.h"

namespace ingot::dist {

Group::Group(const GroupOptions& opt) : opt_(opt) {
  if (opt.size < 1 || opt.rank < 0 || opt.rank >= opt.size)
    raise("[dist] rank {} is outside a group of size {}", opt.rank, opt.size);
  if (opt.size > 1)
    net_ = std::make_unique<util::StarNetwork>(util::StarOptions{.rank = opt.rank,
                                                                 .size = opt.size,
                                                                 .master_addr = opt.master_addr,
                                                                 .master_port = opt.master_port,
                                                                 .timeout_s = opt.timeout_s});
}

Group::~Group() {
  gpu_state_.reset();  // the communicator goes before the transport it was set up over
}

util::StarNetwork& Group::network() const {
  if (!net_) raise("[dist] a single-rank group has no network");
  return *net_;
}

GroupOptions Group::options_from_env() {
  const env::DistEnv e = env::dist();
  GroupOptions o;
  o.size = e.world_size;
  o.rank = e.rank;
  o.master_addr = e.master_addr;
  o.master_port = e.master_port;
  o.timeout_s = e.timeout_s;
  if (o.size < 1) raise("[dist] INGOT_WORLD_SIZE must be at least 1, got {}", o.size);
  if (o.rank < 0 || o.rank >= o.size)
    raise("[dist] INGOT_RANK {} is outside INGOT_WORLD_SIZE {}", o.rank, o.size);
  return o;
}

namespace {
std::mutex g_world_mutex;
std::shared_ptr<Group> g_world;
}  // namespace

std::shared_ptr<Group> world() {
  std::lock_guard<std::mutex> lock(g_world_mutex);
  if (!g_world) g_world = std::make_shared<Group>(Group::options_from_env());
  return g_world;
}

void set_world(std::shared_ptr<Group> g) {
  std::lock_guard<std::mutex> lock(g_world_mutex);
  g_world = std::move(g);
}

}  // namespace ingot::dist
