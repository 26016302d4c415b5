#include "parallel.h"

#ifdef __linux__
#include <sched.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace vw::cpu {
namespace {

// How long a thread of the pool spins for the next job (a worker) or for the last part of its job (the caller) before
// it sleeps on the condition variable. A training step calls some 400 ops a few tens of microseconds apart, and a
// futex wake-up on a VM costs about as much as a small op: sleeping between ops left one of 2 cores idle a quarter of
// the time. VWLMM_SPIN_US=0 sleeps at once (a machine shared with other busy processes).
int64_t spin_ns() {
  static const int64_t ns = [] {
    const char* s = std::getenv("VWLMM_SPIN_US");
    const long us = s ? std::strtol(s, nullptr, 10) : 500;
    return static_cast<int64_t>(std::max(0L, us)) * 1000;
  }();
  return ns;
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spins until done() or spin_ns() has passed; returns done().
template <class Done>
bool spin_until(Done done) {
  const int64_t limit = spin_ns();
  if (limit <= 0) return done();
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0;; ++i) {
    if (done()) return true;
    cpu_relax();
    if ((i & 63) == 63 && std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count() > limit)
      return done();
  }
}

class Pool {
 public:
  explicit Pool(int n) {
    for (int i = 1; i < n; ++i) workers_.emplace_back([this, i] { loop(i); });
    size_ = n;
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
      ++generation_;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return size_; }

  // Runs job(i) for i in [0, parts) with part 0 on the caller; one job at a time.
  void run(int parts, const std::function<void(int)>& job) {
    std::lock_guard<std::mutex> serial(run_mu_);
    {
      std::lock_guard<std::mutex> g(mu_);
      job_ = &job;
      parts_ = parts;
      pending_ = parts - 1;
      error_ = nullptr;
      ++generation_;
    }
    cv_.notify_all();
    try {
      job(0);
    } catch (...) {
      std::lock_guard<std::mutex> g(mu_);
      if (!error_) error_ = std::current_exception();
    }
    spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; });
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [this] { return pending_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void loop(int index) {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void(int)>* job;
      spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; });
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        if (index >= parts_) continue;
        job = job_;
      }
      std::exception_ptr err;
      try {
        (*job)(index);
      } catch (...) {
        err = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> g(mu_);
        if (err && !error_) error_ = err;
        if (--pending_ == 0) done_cv_.notify_one();
      }
    }
  }

  std::vector<std::thread> workers_;
  int size_ = 1;
  std::mutex mu_, run_mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int)>* job_ = nullptr;
  int parts_ = 0;
  // written under mu_; atomic so that spinning threads may read them without it
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;
  std::exception_ptr error_;
};

int env_threads() {
  if (const char* s = std::getenv("VWLMM_NUM_THREADS")) {
    int n = std::atoi(s);
    if (n > 0) return n;
  }
  // the CPUs this process may run on, not the machine's: mpirun binds each rank to a core, and taskset, cgroup
  // cpusets and containers narrow it too; more threads than that only preempt each other while they spin
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
  unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

Pool& pool() {
  static Pool p(env_threads());
  return p;
}

}  // namespace

int num_threads() { return pool().size(); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t parts = std::min<int64_t>(pool().size(), (n + grain - 1) / grain);
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  const int64_t step = (n + parts - 1) / parts;
  pool().run(static_cast<int>(parts), [&](int i) {
    int64_t b = i * step, e = std::min(n, b + step);
    if (b < e) fn(b, e);
  });
}

int64_t parallel_parts(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int64_t)>& fn) {
  if (n <= 0) return 0;
  grain = std::max<int64_t>(grain, 1);
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(pool().size(), (n + grain - 1) / grain));
  const int64_t step = (n + parts - 1) / parts;
  if (parts == 1) {
    fn(0, 0, n);
    return 1;
  }
  pool().run(static_cast<int>(parts), [&](int i) {
    int64_t b = i * step, e = std::min(n, b + step);
    if (b < e) fn(i, b, e);
  });
  return parts;
}

}  // namespace vw::cpu
