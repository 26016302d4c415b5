// The MPI backend: one thread owns MPI (it calls MPI_Init_thread and every collective, in the order they were
// started), so the JS thread never blocks inside MPI. wait() blocks the JS thread on a condition variable with a
// deadline instead: a rank that died or hangs ends this one with an error after the timeout, not a hang. The
// thread and its state are never destroyed (a collective that timed out may still be blocked in MPI at exit).
#include "mpi_communicator.h"

#include <dlfcn.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <map>
#include <thread>
#include <unordered_map>

#include "mpi_api.h"

namespace vw::dist {

namespace {

struct Job {
  CollectiveArgs args;
  uint64_t handle;
};

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(const VwMpiApi* api, std::string path) : api_(api), path_(std::move(path)) {}

  // Starts the thread and runs init on it; throws what init reported.
  void open(double timeout_s) {
    worker_ = new std::thread([this] { loop(); });
    worker_->detach();
    std::unique_lock<std::mutex> lk(mu_);
    const bool done = cv_done_.wait_for(lk, std::chrono::duration<double>(timeout_s), [&] { return init_done_; });
    if (!done) throw_runtime_error("[process group] MPI_Init did not finish within ", timeout_s, " s (", path_, ")");
    if (!init_error_.empty()) throw_runtime_error("[process group] MPI could not start: ", init_error_);
  }

  const char* backend() const override { return "mpi"; }
  std::string library() const override { return world_.library; }
  int rank() const override { return world_.rank; }
  int size() const override { return world_.size; }
  int local_rank() const override { return world_.local_rank; }
  int local_size() const override { return world_.local_size; }

  uint64_t start(const CollectiveArgs& a) override {
    std::lock_guard<std::mutex> lk(mu_);
    throw_if_broken();
    if (finalizing_) throw_runtime_error("[", collective_name(a.kind), "] the process group has been destroyed");
    const uint64_t h = ++next_;
    queue_.push_back({a, h});
    state_[h] = State::queued;
    cv_work_.notify_one();
    return h;
  }

  bool test(uint64_t h) override {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = state_.find(h);
    if (it == state_.end()) throw_range_error("[process group] unknown or already waited-for collective ", h);
    if (it->second == State::failed) throw_runtime_error("[", failed_what_, "] ", broken_);
    return it->second == State::done;
  }

  void wait(uint64_t h, double timeout_s, double waited_s) override {
    std::unique_lock<std::mutex> lk(mu_);
    auto it = state_.find(h);
    if (it == state_.end()) throw_range_error("[process group] unknown or already waited-for collective ", h);
    const auto finished = [&] {
      const State s = state_[h];
      return s == State::done || s == State::failed;
    };
    // broken by a timeout: what is still queued or running will not finish in any useful time
    if (timed_out_ && !finished()) throw CollectiveTimeout(str_cat("[", failed_what_, "] ", broken_));
    if (!cv_done_.wait_for(lk, std::chrono::duration<double>(timeout_s), finished)) {
      if (broken_.empty()) {
        failed_what_ = running_what_.empty() ? "a collective" : running_what_;
        broken_ = str_cat("rank ", world_.rank, " of ", world_.size, ": the collective did not complete within ", timeout_s + waited_s,
                          " s: another rank died, hangs, or did not start the same collectives in the same order; the process group cannot be used any more");
      }
      timed_out_ = true;
      throw CollectiveTimeout(str_cat("[", failed_what_, "] ", broken_));
    }
    const State s = state_[h];
    state_.erase(h);
    if (s == State::failed) throw_runtime_error("[", failed_what_, "] ", broken_);
  }

  void finalize(double timeout_s) override {
    std::unique_lock<std::mutex> lk(mu_);
    if (finalized_) return;
    throw_if_broken();
    finalizing_ = true;
    cv_work_.notify_one();
    if (!cv_done_.wait_for(lk, std::chrono::duration<double>(timeout_s), [&] { return finalized_; }))
      throw_runtime_error("[process group] MPI_Finalize did not finish within ", timeout_s, " s (another rank has not ended its group?)");
    if (!finalize_error_.empty()) throw_runtime_error("[process group] ", finalize_error_);
  }

 private:
  enum class State { queued, running, done, failed };

  void throw_if_broken() const {
    if (!broken_.empty()) throw_runtime_error("[", failed_what_, "] ", broken_);
  }

  void loop() {
    char err[1024] = {0};
    {
      VwMpiWorld w{};
      const int rc = api_->init(&w, err, sizeof err);
      std::lock_guard<std::mutex> lk(mu_);
      world_ = w;
      if (rc != 0) init_error_ = err[0] ? err : "MPI_Init_thread failed";
      init_done_ = true;
      cv_done_.notify_all();
      if (rc != 0) return;
    }
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_work_.wait(lk, [&] { return !queue_.empty() || finalizing_; });
        if (queue_.empty()) {
          err[0] = 0;
          if (api_->finalize(err, sizeof err) != 0) finalize_error_ = err;
          finalized_ = true;
          cv_done_.notify_all();
          return;
        }
        job = queue_.front();
        queue_.pop_front();
        state_[job.handle] = State::running;
        running_what_ = str_cat(collective_name(job.args.kind), " of ", job.args.count, " x ", dtype_name(job.args.dtype));
      }
      const CollectiveArgs& a = job.args;
      VwMpiCall call{static_cast<int>(a.kind), a.in, a.out, static_cast<unsigned long long>(a.count), static_cast<int>(a.dtype), static_cast<int>(a.op), a.root};
      err[0] = 0;
      const int rc = api_->run(&call, err, sizeof err);
      std::lock_guard<std::mutex> lk(mu_);
      if (rc != 0) {
        state_[job.handle] = State::failed;
        if (broken_.empty()) {
          failed_what_ = running_what_;
          broken_ = str_cat("rank ", world_.rank, " of ", world_.size, ": MPI failed: ", err, "; the process group cannot be used any more");
        }
        // what was queued behind it fails too: the ranks no longer agree on where they are
        for (const Job& j : queue_) state_[j.handle] = State::failed;
        queue_.clear();
      } else if (state_.count(job.handle)) {
        state_[job.handle] = State::done;
      }
      running_what_.clear();
      cv_done_.notify_all();
    }
  }

  const VwMpiApi* api_;
  const std::string path_;
  std::thread* worker_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_work_, cv_done_;
  std::deque<Job> queue_;
  std::unordered_map<uint64_t, State> state_;
  uint64_t next_ = 0;
  VwMpiWorld world_{};
  bool init_done_ = false, finalizing_ = false, finalized_ = false, timed_out_ = false;
  std::string init_error_, finalize_error_, broken_, failed_what_, running_what_;
};

// A source build links libvwlmm_mpi.so against the MPI it finds.
constexpr const char* kSourceBuild = "VWLMM_BUILD_FROM_SOURCE=1 npm install vwlmm (npm run build:native in a checkout)";

struct Loaded {
  const VwMpiApi* api = nullptr;
  std::string version, mpi_path;
};

// Loads libvwlmm_mpi.so (and through it the MPI library it was linked against); throws why it cannot. Loaded
// libraries are never closed: Open MPI does not support being unloaded. The description is taken at the first
// load, which precedes MPI_Init (open_mpi loads first): afterwards only the communication thread may call MPI.
std::mutex g_load_mu;
std::map<std::string, Loaded> g_loaded;
std::string g_started;  // the library MPI was started from (open_mpi), once it was

const Loaded& load_mpi(const std::string& library) {
  std::lock_guard<std::mutex> lk(g_load_mu);
  auto it = g_loaded.find(library);
  if (it != g_loaded.end()) return it->second;
  // a second MPI beside the running one would mix two MPI libraries' global symbols in one process
  if (!g_started.empty())
    throw_runtime_error("[process group] ", library, " is not loaded: this process runs MPI from ", g_started, " (one MPI backend per process)");
  if (access(library.c_str(), F_OK) != 0)
    throw_runtime_error("[process group] the MPI backend ", library, " is not there: this vwlmm.node was built where no MPI was found. To train over MPI, "
                        "install Open MPI (apt install libopenmpi-dev openmpi-bin) and build vwlmm from source, which builds the backend against it: ", kSourceBuild);
  // RTLD_GLOBAL: Open MPI loads its components as plugins that resolve symbols of libmpi from the global scope
  // (mpi4py does the same).
  void* h = dlopen(library.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    const char* e = dlerror();
    // dlerror names what failed: most often the MPI library libvwlmm_mpi.so was linked against is not installed
    // (libmpi.so.40 is Open MPI's, from 3.0 on: the prebuilt binary's)
    throw_runtime_error("[process group] the MPI backend ", library, " could not be loaded: ", e ? e : "dlopen failed",
                        ". Install the MPI it was linked against (Open MPI's libmpi.so.40: apt install openmpi-bin libopenmpi-dev), "
                        "or build vwlmm from source against the MPI you have (with its development files): ", kSourceBuild);
  }
  using Entry = const VwMpiApi* (*)();
  auto entry = reinterpret_cast<Entry>(dlsym(h, "vwlmm_mpi_api"));
  const VwMpiApi* api = entry ? entry() : nullptr;
  if (!api || api->abi != VWLMM_MPI_ABI)
    throw_runtime_error("[process group] ", library, " is not a libvwlmm_mpi.so of this version (ABI ", api ? api->abi : -1, ", expected ", VWLMM_MPI_ABI,
                        "): it must come from the same build as vwlmm.node: ", kSourceBuild);
  Loaded l;
  l.api = api;
  char version[256] = {0}, path[4096] = {0};
  api->describe(version, sizeof version, path, sizeof path);
  l.version = version;
  l.mpi_path = path;
  return g_loaded.emplace(library, std::move(l)).first->second;
}

}  // namespace

MpiStatus mpi_status(const std::string& library) {
  MpiStatus s;
  s.built = access(library.c_str(), F_OK) == 0;
  try {
    const Loaded& l = load_mpi(library);
    s.available = true;
    s.version = l.version;
    s.mpi_path = l.mpi_path;
  } catch (const Error& e) {
    s.reason = e.what();
  }
  return s;
}

Communicator* open_mpi(const std::string& library, double timeout_s) {
  const VwMpiApi* api = load_mpi(library).api;
  {
    // MPI starts once per process: a second thread calling MPI_Init_thread (after an init that timed out, say)
    // would be undefined behaviour.
    std::lock_guard<std::mutex> lk(g_load_mu);
    if (!g_started.empty()) throw_runtime_error("[process group] MPI was already started in this process (it starts once per process, even after a failed or timed-out start)");
    g_started = library;
  }
  // Owned by the process from here on (see the header comment): released only by the OS at exit.
  auto* comm = new MpiCommunicator(api, library);
  comm->open(timeout_s);
  return comm;
}

}  // namespace vw::dist
