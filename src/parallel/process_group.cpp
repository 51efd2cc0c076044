// The c10d side of a multi-process run: the TCPStore rendezvous (rank 0 serves it unless
// torchrun's agent already does), the Gloo (CPU) or NCCL (CUDA) process groups, the all-reduce
// every Communicator runs, and the health check that turns a failed collective into an error
// naming the lost rank: each rank bumps a heartbeat counter in the store twice a second from a
// thread of its own; a rank that fails on purpose posts its error there before it exits.

#include "process_group.h"

#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef EFFARCH_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef EFFARCH_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace effarch::parallel::detail {

bool have_gloo() {
#ifdef EFFARCH_HAVE_GLOO
  return true;
#else
  return false;
#endif
}

bool have_nccl() {
#ifdef EFFARCH_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

namespace {

// The store's keys live under this prefix (torchrun's agent store holds its own keys too; a
// restarted torchrun worker group gets fresh ones).
std::string key_prefix() {
  const char* restart = std::getenv("TORCHELASTIC_RESTART_COUNT");
  return fmt::format("effarch/{}/", restart != nullptr ? restart : "0");
}

// Process-wide state of the run: the store, the heartbeat thread. Created by start(), stopped at
// exit (an atexit handler registered after libtorch's statics, so it runs before they go).
struct Health {
  LaunchEnv env;
  std::chrono::milliseconds timeout{};
  c10::intrusive_ptr<c10d::Store> store;       // prefixed
  c10::intrusive_ptr<c10d::Store> beat_store;  // a second connection, for the heartbeat thread
  std::atomic<bool> stop{false};
  std::thread beat;
  std::mutex failure_mutex;
  bool failure_posted = false;

  std::string alive_key(int r) const { return fmt::format("alive/{}", r); }
  std::string failed_key(int r) const { return fmt::format("failed/{}", r); }

  // What went wrong, as well as the store can tell: a rank that posted its error, else the ranks
  // whose heartbeat stopped, else the store itself gone (rank 0, or torchrun's agent, lost).
  std::string diagnose(const std::string& what, const std::string& cause) {
    try {
      std::vector<std::string> failed;
      for (int r = 0; r < env.world_size; ++r) {
        if (r == env.rank) continue;
        if (store->check({failed_key(r)})) {
          const std::vector<uint8_t> v = store->get(failed_key(r));
          failed.push_back(fmt::format("rank {} failed: {}", r, std::string(v.begin(), v.end())));
        }
      }
      if (!failed.empty()) return fmt::format("rank {}: {}: {}", env.rank, what, fmt::join(failed, "; "));
      std::vector<int64_t> before;
      for (int r = 0; r < env.world_size; ++r) before.push_back(store->add(alive_key(r), 0));
      std::this_thread::sleep_for(std::chrono::milliseconds(2500));
      std::vector<int> lost;
      for (int r = 0; r < env.world_size; ++r) {
        if (r != env.rank && store->add(alive_key(r), 0) == before[static_cast<size_t>(r)]) lost.push_back(r);
      }
      for (int r = 0; r < env.world_size; ++r) {  // one may have posted meanwhile
        if (r != env.rank && store->check({failed_key(r)})) {
          const std::vector<uint8_t> v = store->get(failed_key(r));
          return fmt::format("rank {}: {}: rank {} failed: {}", env.rank, what, r, std::string(v.begin(), v.end()));
        }
      }
      if (!lost.empty()) {
        return fmt::format("rank {}: {}: lost rank {} (its process stopped: no heartbeat for 2.5 s) ({})", env.rank,
                           what, fmt::join(lost, ", "), cause);
      }
      return fmt::format("rank {}: {}: {} (every rank still has a heartbeat: a timeout of {} s, or a mismatch)",
                         env.rank, what, cause, timeout.count() / 1000);
    } catch (const std::exception&) {
      return fmt::format("rank {}: {}: lost rank 0 (the store at {}:{}{} is unreachable) ({})", env.rank, what,
                         env.master_addr, env.master_port, env.agent_store ? ", served by torchrun's agent," : "",
                         cause);
    }
  }
};

Health* g_health = nullptr;  // leaked on purpose: alive until the process exits

void stop_heartbeat() {
  if (g_health == nullptr) return;
  g_health->stop = true;
  if (g_health->beat.joinable()) g_health->beat.join();
}

c10::intrusive_ptr<c10d::Store> connect(const LaunchEnv& env, bool server, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(env.master_port);
  o.isServer = server;
  o.numWorkers = std::nullopt;
  o.waitWorkers = false;
  o.timeout = timeout;
  auto tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
  return c10::make_intrusive<c10d::PrefixStore>(key_prefix(), tcp);
}

class C10dCommunicator final : public Communicator {
 public:
  // `host_wait`: wait on the host for each all-reduce, bounded by `timeout` (Gloo). NCCL's wait
  // instead makes the current stream wait, so decode steps stay asynchronous and capturable in a
  // CUDA graph; its own watchdog enforces the timeout (ProcessGroupNCCL::Options::timeout).
  C10dCommunicator(c10::intrusive_ptr<c10d::Backend> pg, int rank, int size, std::string name,
                   std::chrono::milliseconds timeout, bool host_wait)
      : pg_(std::move(pg)), rank_(rank), size_(size), name_(std::move(name)), timeout_(timeout),
        host_wait_(host_wait) {}
  // A healthy group is shut down before it is destroyed, as torch.distributed's
  // destroy_process_group does (NCCL otherwise warns at exit that it was not, and may leak its
  // communicators). After a failed collective the group is left as it is (shutting it down or
  // destroying it could wait on a lost peer): the process is about to exit anyway. So is it when
  // an exception unwinds past it (this rank failed outside a collective, as a corrupt checkpoint
  // does): shutting down would close the peers' connections before main posts this rank's error
  // (post_failure), and under load a peer's failed collective could then find no error to name.
  ~C10dCommunicator() override {
    if (failed_ || std::uncaught_exceptions() > 0) {
      (void)pg_.release();
      return;
    }
    try {
      pg_->shutdown();
    } catch (const std::exception&) {  // nothing to report it to: the run's results are written
    }
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void all_reduce(at::Tensor& t) override {
    std::vector<at::Tensor> v{t};
    try {
      auto work = pg_->allreduce(v);
      if (!host_wait_) {
        work->wait();
      } else if (!work->wait(timeout_)) {
        throw std::runtime_error("the all-reduce did not finish");
      }
    } catch (const std::exception& e) {
      std::string cause = e.what();
      const size_t nl = cause.find('\n');  // c10::Error adds a backtrace after the first line
      if (nl != std::string::npos) cause.resize(nl);
      failed_ = true;
      const std::string what = fmt::format("an all-reduce over the {} group failed", name_);
      throw CommError(g_health != nullptr ? g_health->diagnose(what, cause) : what + ": " + cause);
    }
  }

 private:
  c10::intrusive_ptr<c10d::Backend> pg_;
  int rank_, size_;
  std::string name_;
  std::chrono::milliseconds timeout_;
  bool host_wait_;
  bool failed_ = false;
};

c10::intrusive_ptr<c10d::Backend> make_backend(const c10::intrusive_ptr<c10d::Store>& store, const LaunchEnv& env,
                                               int rank, int size, int cuda_index, std::chrono::milliseconds timeout) {
  if (cuda_index >= 0) {
#ifdef EFFARCH_HAVE_NCCL
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = timeout;
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, opts);
#else
    (void)env;
    throw UsageError("this effarch was built without NCCL");
#endif
  }
#ifdef EFFARCH_HAVE_GLOO
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname != '\0') {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost") {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  opts->threads = 1;
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, size, opts);
#else
  (void)store, (void)env, (void)rank, (void)size, (void)timeout;
  throw UsageError("this effarch was built without Gloo");
#endif
}

}  // namespace

Groups start(const LaunchEnv& env, const Layout& layout, int tp_rank, int ep_rank, int cuda_index,
             std::chrono::milliseconds timeout) {
  const std::string what = fmt::format("rank {}: the rendezvous at {}:{}", env.rank, env.master_addr, env.master_port);
  auto* h = new Health;
  h->env = env;
  h->timeout = timeout;
  try {
    h->store = connect(env, env.rank == 0 && !env.agent_store, timeout);
    h->beat_store = connect(env, false, timeout);
  } catch (const std::exception& e) {
    std::string cause = e.what();
    if (const size_t nl = cause.find('\n'); nl != std::string::npos) cause.resize(nl);
    throw CommError(fmt::format("{} failed: {}", what, cause));
  }
  g_health = h;
  h->store->add(h->alive_key(env.rank), 1);
  h->beat = std::thread([h] {
    int ticks = 0;
    while (!h->stop.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      if (++ticks % 5 != 0) continue;
      try {
        h->beat_store->add(h->alive_key(h->env.rank), 1);
      } catch (const std::exception&) {
        return;  // the store is gone: the next collective says so
      }
    }
  });
  std::atexit(stop_heartbeat);
  Groups g;
  try {
    auto world_store = c10::make_intrusive<c10d::PrefixStore>("world/", h->store);
    g.world = std::make_shared<C10dCommunicator>(make_backend(world_store, env, env.rank, env.world_size, cuda_index,
                                                              timeout),
                                                 env.rank, env.world_size, "world", timeout, cuda_index < 0);
    if (layout.tp > 1 && layout.tp < env.world_size) {
      auto tp_store = c10::make_intrusive<c10d::PrefixStore>(fmt::format("tp{}/", ep_rank), h->store);
      g.tp = std::make_shared<C10dCommunicator>(make_backend(tp_store, env, tp_rank, layout.tp, cuda_index, timeout),
                                                tp_rank, layout.tp, "tensor-parallel", timeout, cuda_index < 0);
    } else if (layout.tp == env.world_size) {  // the whole world (a world of one too: the same path)
      g.tp = g.world;
    }
  } catch (const CommError&) {
    throw;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    std::string cause = e.what();
    if (const size_t nl = cause.find('\n'); nl != std::string::npos) cause.resize(nl);
    throw CommError(h->diagnose("creating the process group failed", cause));
  }
  g.backend = cuda_index >= 0 ? "nccl" : "gloo";
  return g;
}

void post_failure(const std::string& message) noexcept {
  if (g_health == nullptr) return;
  try {
    std::lock_guard<std::mutex> lock(g_health->failure_mutex);
    if (g_health->failure_posted) return;
    g_health->failure_posted = true;
    g_health->store->set(g_health->failed_key(g_health->env.rank), message);
  } catch (...) {
  }
}

}  // namespace effarch::parallel::detail
