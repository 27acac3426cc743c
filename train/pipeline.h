// A SWARM trainer's side of the pipeline: it holds the embedding and the head,
// and pushes micro-batches through one peer of every stage (forward), computes the
// loss, and sends the gradients back (backward) — SWARM's stochastic wiring.
//
// Wiring, per stage (StageRouter): the stage's peers come from its progress
// records in the DHT ("<run>.s<k>.progress": address, epoch, announced capacity).
// Each call goes to the peer with the earliest expected finish time,
//   (work queued there by us + this call) ÷ its throughput
// (work: a window's forward = 1, backward = 2.5; throughput: an EMA of the work per
// second we measured, or what the peer announces until we measured it; a peer never
// tried counts as the fastest known, so new peers are tried soon). A peer that fails
// (error, timeout, malformed or non-finite reply) is banned until its record expires
// and the call goes to another; "wait" is retried shortly; "stale" drops the
// micro-batch (its epoch is over; nothing of it is counted).
//
// TrainerSource runs `inflight` micro-batches at once on their own threads and is
// the gradient source of the trainers' collaborative averaging of the embedding and
// head: a micro-batch's head and embedding gradients are added to the epoch's sum
// only when its backward came back through every stage within that epoch. When the
// trainers reach the target batch, the micro-batches already in the pipeline finish
// in the epoch (close() waits for them), so the stages and the trainers count the
// same samples and nothing computed is wasted.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/thread_pool.h"
#include "train/collaborative.h"
#include "train/pipeline_messages.h"
#include "train/pretrain.h"
#include "train/progress_tracker.h"

namespace engine::train {

class NetThread;

// "<run>.s<k>" and "<run>.trainers": the collaborative runs of the roles.
std::string stage_run(const std::string& run, int64_t stage);
std::string trainers_run(const std::string& run);

class StageRouter {
 public:
  // Replaces the known peers by these records (those without an address are skipped).
  void update(const std::vector<PeerProgress>& records, double now);
  // The peer with the earliest expected finish for `work`, not banned, not in
  // `exclude`; "" when none.
  std::string pick(double work, const std::set<std::string>& exclude, double now);
  void started(const std::string& addr, double work);
  void finished(const std::string& addr, double work, double seconds);
  void failed(const std::string& addr, double now);  // banned until its record expires (at least 5 s)
  void aborted(const std::string& addr, double work);  // no answer to measure
  int live(double now) const;
  struct Peer {
    std::string addr;
    double announced = 0;  // samples/s from its record
    double measured = 0;   // work/s we saw (EMA), 0 until measured
    double queued = 0;     // our work in flight there
    double expiration = 0; // of its record (DHT time)
    double banned_until = 0;
    int64_t epoch = 0;
  };
  std::map<std::string, Peer> peers;
};

struct PipelineConfig {
  std::string run;
  int64_t stages = 2;
  int64_t seqlen = 128;
  int64_t target_batch = 64;
  ActDType wire = ActDType::F16;
  double call_timeout_s = 30;     // one swarm.fwd / swarm.bwd
  double microbatch_timeout_s = 120;
  double refresh_s = 1.0;         // re-read the stages' records at most this often
  std::function<void(const std::string&)> log;
};

struct PipelineTotals {
  int64_t completed = 0, dropped_stale = 0, dropped_failed = 0, retries = 0, bans = 0;
  uint64_t bytes_sent = 0, bytes_received = 0;
};

class Pipeline {
 public:
  Pipeline(NetThread& net, const ModelParams& trainer_part, ThreadPool& pool, PipelineConfig cfg);

  // Forward through every stage at `epoch`; the hidden states entering each stage
  // are kept in *inputs ([stages][B·n·d]). nullopt: stale or failed (why in *why).
  struct Forward {
    std::vector<std::vector<float>> inputs;
    std::vector<float> out;  // [B][n][d] the last stage's output
  };
  std::optional<Forward> forward(const std::vector<float>& x, int64_t B, int64_t n, int64_t epoch, uint64_t mb,
                                 bool* stale);
  // Backward from the last stage to the first: dy [B][n][d] in, the gradient of the
  // first stage's input out. false: stale or failed.
  bool backward(const Forward& f, std::vector<float>& dy, int64_t B, int64_t n, int64_t epoch, uint64_t mb,
                int64_t samples, int64_t tokens, bool* stale);
  // Mean held-out loss through the stages at `epoch` (forward only), NaN if the
  // stages do not answer in time.
  double evaluate(const std::vector<Window>& windows, int64_t epoch);
  PipelineTotals totals() const;
  int live_peers(int64_t stage);
  // A micro-batch's fate, for the totals: completed, dropped as stale, or failed.
  void count(bool completed, bool stale);

 private:
  // One call to stage k, with re-routing: nullopt when stale (*stale) or failed.
  std::optional<std::vector<float>> call(int64_t k, bool backward, const StageRequest& req, int64_t B, int64_t n,
                                         bool* stale);
  void refresh(int64_t k, bool force);

  NetThread& net_;
  const ModelParams& part_;
  ThreadPool& pool_;
  PipelineConfig cfg_;
  int64_t width_;
  mutable std::mutex mu_;
  std::vector<StageRouter> routers_;
  std::vector<double> refreshed_at_;
  PipelineTotals totals_;
};

class TrainerSource : public GradientSource {
 public:
  // `t`: the trainer's part (embedding + head); its parameters are read only between
  // open() and close(). Micro-batches of `batch` windows from t.data(), drawn with
  // data_seed. `inflight` micro-batch threads.
  TrainerSource(Pipeline& pipe, Trainer& t, ThreadPool& pool, int64_t batch, uint64_t data_seed, int inflight,
                int64_t target_batch);
  ~TrainerSource() override;
  void open(int64_t epoch, float* grad) override;
  Got collect(double wait_s) override;
  Got close() override;
  // Stops starting micro-batches once those in the pipeline and committed since the
  // last hint would cover it (the other trainers' share arrives with the next look).
  void hint_remaining(int64_t samples) override;

 private:
  void worker_main();
  Pipeline& pipe_;
  Trainer& t_;
  ThreadPool& pool_;
  int64_t batch_;
  uint64_t data_seed_;
  int64_t target_batch_;
  float token_scale_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false, draining_ = false, stopping_ = false;
  int64_t epoch_ = -1;
  float* grad_ = nullptr;
  int active_ = 0;             // micro-batches in the pipeline
  int64_t in_pipeline_ = 0;    // their samples
  int64_t since_hint_ = 0;     // samples committed since the last hint
  int64_t budget_ = 0;         // samples we may still start
  int64_t open_budget_ = 0;    // the budget an epoch opens with (the last epoch's first share)
  bool hinted_ = false;        // this epoch had its first hint
  Got pending_;
  uint64_t next_mb_ = 0;
  std::vector<std::thread> threads_;
};

}  // namespace engine::train
