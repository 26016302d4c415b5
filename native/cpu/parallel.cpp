#include "parallel.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace vw::cpu {
namespace {

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
  int parts_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

int env_threads() {
  if (const char* s = std::getenv("VWLMM_NUM_THREADS")) {
    int n = std::atoi(s);
    if (n > 0) return n;
  }
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
