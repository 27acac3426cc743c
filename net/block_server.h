// Serves a span of transformer blocks over net/rpc (docs/protocol.md §7):
//   blocks.info     what is served, cache left
//   blocks.open     an inference session: KV cache for max_length positions of
//                   blocks [first, last) from the cache budget (waits a bounded
//                   time for room, then fails "overloaded")
//   blocks.step     hidden states of the next positions in, the span's outputs out
//   blocks.close    ends a session, returns its memory
//   blocks.forward  stateless training forward of a batch of sequences
//   blocks.backward stateless backward: the span's inputs and the gradient of its
//                   outputs in, the gradient of its inputs (and of deep prompts) out
// Compute runs on a libuv worker thread, one job at a time, so the loop keeps
// answering (pings, DHT, other sessions' errors) while a step runs. Inference
// steps go before queued forward/backward jobs, so chat stays responsive while
// others train. Every bad
// request gets an error reply; nothing a peer sends can make us allocate more
// than the budget: sessions come out of --cache-tokens, a peer may hold at
// most max_sessions_per_peer of them (max_sessions_per_ip from one address)
// holding at most max_cache_tokens_per_peer positions (per id and per address),
// and a step carries at most max_batch positions (and fits in a frame).
#pragma once
#include <uv.h>

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "core/thread_pool.h"
#include "models/llama.h"
#include "net/byzantine.h"
#include "net/rpc.h"

namespace engine::net {

struct BlockServerOptions {
  std::string model_name;
  int64_t cache_tokens = 8192;        // KV positions of the whole span the sessions may hold together
  int max_sessions = 64;
  int max_sessions_per_peer = 8;
  int max_sessions_per_ip = 16;       // ids are cheap to mint: the source address is counted too
  // KV positions (of the whole span) one peer id, and one source IP, may hold
  // in open sessions (beyond it: refused, not queued); 0 = no share below the whole budget.
  int64_t max_cache_tokens_per_peer = 0;
  int64_t max_length = 0;             // longest session; 0 = the model's context
  int64_t max_batch = 2048;           // positions per step / forward / backward (of a whole batch)
  int max_train_jobs = 32;            // forward/backward requests queued at once (then "overloaded")
  int max_train_jobs_per_peer = 4;
  int max_train_jobs_per_ip = 8;      // all peers at one address together
  uint32_t max_wait_ms = 10000;       // the longest a client may wait for cache room
  uint32_t step_timeout_ms = 120000;  // a session with no step for this long is closed
  uint32_t session_timeout_ms = 3600000;
  // A session whose owner has had no open connection to us for this long is
  // closed: a vanished client's cache comes back without waiting for step_timeout_ms.
  uint32_t orphan_timeout_ms = 30000;
  DType kv_type = DType::F16;
  uint32_t step_delay_ms = 0;         // tests and demos: a slow server (sleeps on the worker per step)
  bool log_steps = false;             // log every step (tests watch a session's progress)
  ByzantineMode byzantine;            // tests only: lie about inference step outputs
  std::function<void(const std::string&)> log;
};

class BlockServer {
 public:
  BlockServer(Rpc& rpc, std::shared_ptr<const LlamaModel> model, ThreadPool& pool, BlockServerOptions opts);
  ~BlockServer();
  BlockServer(const BlockServer&) = delete;
  BlockServer& operator=(const BlockServer&) = delete;

  // Serves a different span (rebalancing): every open session is closed.
  void set_model(std::shared_ptr<const LlamaModel> model);
  const LlamaModel& model() const { return *model_; }
  int64_t first() const { return model_->first_block(); }
  int64_t last() const { return model_->last_block(); }
  int64_t max_length() const;

  // KV positions (of the whole span) still free.
  int64_t cache_tokens_left() const;
  size_t session_count() const { return sessions_.size(); }
  bool busy() const { return running_ || !jobs_.empty() || !train_jobs_.empty(); }
  // Closes the sweep timer and every session; the loop may then exit once a running job ends.
  void stop();

  // Called when cache_tokens_left() changed (the announcer may refresh early).
  std::function<void()> on_cache_change;

  struct Stats {
    uint64_t opened = 0, closed = 0, expired = 0, steps = 0, forwards = 0, backwards = 0, errors = 0, waited = 0;
  };
  const Stats& stats() const { return stats_; }

 private:
  struct Session;
  struct Waiter;
  struct Job;

  void handle_info(Request& r);
  void handle_open(Request& r);
  void handle_step(Request& r);
  void handle_close(Request& r);
  void handle_forward(Request& r);
  void handle_backward(Request& r);
  struct TrainRequest;
  // Parses and checks a forward/backward request; false after replying with the error.
  bool parse_train_request(Request& r, bool backward, TrainRequest& t);
  // A training job ended: its peer's count goes down; false (after the error reply) when it failed.
  bool end_train_job(const NodeId& peer, const std::string& ip, Responder& resp, const std::string& err);
  bool try_open(const Waiter& w);
  void admit_waiters();
  void end_session(uint64_t id, const char* why);
  void sweep();
  void fail(Request& r, ErrorCode code, const std::string& msg);
  // `training` jobs wait behind every queued inference step.
  void enqueue(std::function<void()> work, std::function<void(const std::string&)> after, bool training = false);
  void start_next();
  int64_t units_per_token() const { return last() - first(); }

  Rpc& rpc_;
  std::shared_ptr<const LlamaModel> model_;
  ThreadPool& pool_;
  BlockServerOptions opts_;
  std::map<uint64_t, std::shared_ptr<Session>> sessions_;
  std::deque<Waiter> waiters_;
  int64_t used_units_ = 0;  // block-positions held by sessions
  std::deque<std::unique_ptr<Job>> jobs_;        // inference steps
  std::deque<std::unique_ptr<Job>> train_jobs_;  // forward / backward
  std::map<NodeId, int> train_jobs_of_;          // queued or running, per peer
  std::map<std::string, int> train_jobs_at_;     // the same, per source IP
  bool running_ = false;
  uv_timer_t* sweep_timer_ = nullptr;
  bool stopped_ = false;
  Stats stats_;
  std::mt19937_64 byzantine_rng_{12345};
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace engine::net
