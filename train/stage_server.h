// A SWARM stage peer's serving side: answers swarm.fwd / swarm.bwd for the blocks of
// its stage (train/stage_compute.h) and is the gradient source of the stage's
// collaborative averaging (train/collaborative.h).
//
// Epochs: the trainers lead. A request carries the trainers' epoch e; the stage at
// epoch s
//   e == s, open      computes (backward: adds the weight gradients to the epoch's sum)
//   e <  s, or e == s after the epoch closed   answers "stale" (cannot count any more)
//   e >  s            is held until the stage opens that epoch (at most park_s, then
//                     "wait"); e == s + 1 also ends epoch s (the trainers moved on)
// The stage's epoch also ends when most trainers' progress records in the DHT
// ("<run>.trainers") report a later epoch, so a peer that no request reached still
// averages with the others. Between close() and the next open() nothing reads or
// writes the parameters (the averager steps them).
//
// One worker thread computes the requests in arrival order with the stage's thread
// pool; the loop thread only decodes and replies. At most max_queue requests wait
// (more: "overloaded"), so a hostile trainer bounds our memory.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "core/thread_pool.h"
#include "train/collaborative.h"
#include "train/pipeline_messages.h"
#include "train/pretrain.h"

namespace engine::train {

class NetThread;

struct StageServerConfig {
  std::string run;             // the SWARM run (not "<run>.s<k>")
  int64_t stage = 0;
  int64_t max_n = 128;         // the run's seqlen
  int64_t max_windows = 64;    // per request
  int max_queue = 64;           // requests waiting to be computed, and again waiting for our next epoch
  double park_s = 2.0;          // a request for an epoch we have not opened waits this long, then gets "wait"
  double throttle = 1.0;       // TEST HOOK (--throttle): every request takes this many times as long
  double trainers_poll_s = 0.5;
  // TEST HOOKS. die_*: SIGKILL this process in the middle of a forward (die_in_forward)
  // or backward, the first one at or after epoch die_at_epoch (-1: never; "at or after"
  // because the trainers' routing may send this peer nothing during that very epoch). serve: what a dishonest stage peer
  // answers: "nan" (activations with a NaN), "shape" (one window short), "" honest.
  int64_t die_at_epoch = -1;
  bool die_in_forward = false;
  std::string serve;
  std::function<void(const std::string&)> log;
};

class StageServer : public GradientSource {
 public:
  // `t` holds the stage's part (its parameters are read by the worker between
  // open() and close() only). Registers swarm.fwd and swarm.bwd on net's Rpc.
  StageServer(NetThread& net, Trainer& t, ThreadPool& pool, StageServerConfig cfg);
  // Answers later requests with "moved", drains the queue, joins the worker.
  ~StageServer() override;
  StageServer(const StageServer&) = delete;
  StageServer& operator=(const StageServer&) = delete;

  void open(int64_t epoch, float* grad) override;
  Got collect(double wait_s) override;
  Got close() override;
  bool epoch_over(int64_t epoch) override;
  bool counts_toward_target() const override { return false; }  // the trainers' epoch decides

  // What this peer announces: samples per second of busy time (forward + backward
  // of a window; EMA), 0 until measured; and requests waiting now.
  double capacity() const;
  int queued() const;
  struct Totals {
    int64_t forwards = 0, backwards = 0, stale = 0, waits = 0, bad = 0;
  };
  Totals totals() const;

 private:
  struct Job;
  void on_request(void* request, bool backward);
  void worker_main();
  void run_job(Job& j);
  void reply(Job& j, const std::string& body);

  NetThread& net_;
  Trainer& t_;
  ThreadPool& pool_;
  StageServerConfig cfg_;
  int64_t width_;

  mutable std::mutex mu_;
  std::condition_variable cv_;       // jobs queued / state changed
  std::condition_variable idle_cv_;  // the worker finished a job
  std::deque<std::shared_ptr<Job>> queue_;
  std::deque<std::pair<std::shared_ptr<Job>, double>> parked_;  // waiting for open(), since
  bool busy_ = false, stopping_ = false;
  int64_t epoch_ = 0;
  bool open_ = false;
  float* grad_ = nullptr;
  Got pending_;                      // added since the last collect
  int64_t max_seen_epoch_ = -1;      // the highest epoch of a request (next one only)
  int64_t closed_epoch_ = -1;        // the last epoch close() ended
  double capacity_ = 0;              // samples/s of busy time, EMA
  Totals totals_;
  // Trainers' epoch from the DHT, polled by epoch_over at most every trainers_poll_s.
  int64_t trainers_epoch_ = -1;
  double last_poll_ = -1e9;
  std::thread worker_;
};

}  // namespace engine::train
