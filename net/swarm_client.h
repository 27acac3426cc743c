// The client side of distributed inference (after Petals' RemoteSequential and
// InferenceSession): finds servers for a model in the DHT, routes a chain of
// spans that covers every block, streams hidden states through it, and
// survives servers that fail.
//
// Fault tolerance: every input sent to a span is kept (with the step sizes it
// was sent in). When a server fails or times out, the client bans it with
// exponential backoff, routes the missing blocks anew, replays the kept inputs
// to the replacement servers (rebuilding their KV caches, in the original step
// sizes so the caches hold the very same numbers) and carries on with the step
// that failed. Greedy output with failures equals greedy output without.
//
// Spot checks (verify_rate > 0; net/spot_check.h has the rules): after a span's
// step, with probability verify_rate, the client feeds what that span received
// since the last check to a shadow session on another server holding the same
// blocks and compares those positions' outputs. On a mismatch a third server arbitrates; the liar is banned for
// the rest of the process and reported in the DHT ("_engine.bans.<model>"),
// and the session is rebuilt on the others from the first bad position: with
// `rollback` on, step() returns false and the caller regenerates from
// position() (SwarmRunner::take_rollback); otherwise the current step is
// recomputed on the rebuilt chain (the tokens chosen before it stay).
//
// Blocking API on a private libuv loop: each call runs the loop until it is
// done. Not thread-safe; one thread drives a client and its sessions.
//
//   SwarmClient client(opts);                        // joins the DHT
//   InferenceSession s(client, max_length);          // route + sessions
//   s.step(hidden, n);                               // blocks 0..L on [n][n_embd], in place
//   TrainingChain (net/swarm_training.h)             // stateless forward/backward for training
#pragma once
#include <uv.h>

#include <functional>
#include <map>
#include <random>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "net/dht_node.h"
#include "net/routing.h"
#include "net/rpc.h"
#include "net/server_info.h"

namespace engine::net {

struct SwarmClientOptions {
  std::vector<std::string> initial_peers;  // DHT peers to join through (required)
  std::string swarm = "default";           // swarm name (handshake)
  std::shared_ptr<const Identity> identity;  // null = a fresh key pair
  std::shared_ptr<const SwarmKey> swarm_key;  // private swarm; null = open
  std::string model;                       // model name in the DHT (keys "<model>.<block>")
  int64_t n_blocks = 0;                    // blocks of the model
  int64_t n_embd = 0;                      // hidden size
  DType wire_dtype = DType::F32;           // hidden states on the wire: f32 (exact), f16, bf16
  uint32_t rpc_timeout_ms = 3000;          // DHT, open, close, ping
  uint32_t step_timeout_ms = 30000;        // one step or forward
  uint32_t cache_wait_ms = 1000;           // servers may hold an open this long waiting for cache room
  double give_up_s = 60;                   // blocks without any usable server for this long: error
  uint32_t ban_base_ms = 5000;             // first ban of a failed server; doubles per failure
  uint32_t ban_max_ms = 300000;
  size_t max_request_bytes = 4u << 20;     // hidden bytes per request (below the frame limit)
  bool merge_replay = false;               // replay history in big chunks (faster; may change rounding)
  std::function<void(const std::string&)> log;  // route and re-route lines (--verbose)
  double verify_rate = 0;                  // chance that a span step is re-run on another server
  uint64_t verify_seed = 0;                // RNG of those draws (0: random)
  double verify_tolerance = 0;             // relative L2 error per position; 0: by wire dtype
  std::function<void(const std::string&)> warn;  // one-line warnings (always shown)
};

class InferenceSession;

// DHT key of spot-check ban reports on servers of `model` (subkey "@<reporter id>").
std::string ban_report_key(const std::string& model);
constexpr double kBanReportTtlS = 3600;

class SwarmClient {
 public:
  // Joins the DHT through opts.initial_peers; throws Error if none answers.
  explicit SwarmClient(SwarmClientOptions opts);
  ~SwarmClient();
  SwarmClient(const SwarmClient&) = delete;
  SwarmClient& operator=(const SwarmClient&) = delete;

  const SwarmClientOptions& options() const { return opts_; }
  // Reads the servers announced for the model and pings them; returns them.
  const ServerMap& refresh();
  const ServerMap& servers() const { return servers_; }
  // Route of blocks [from, to) with current knowledge (bans applied).
  Route route(int64_t from, int64_t to, RouteMode mode, int64_t cache_tokens_needed = 0);

  // Failure bookkeeping (exponential backoff per server id).
  void ban(const std::string& id, const std::string& why);
  bool banned(const std::string& id) const;
  // A server caught lying by a spot check: never routed to again by this client,
  // and reported in the DHT under "_engine.bans.<model>", subkey "@<our id>".
  void distrust(const std::string& id, int64_t first, int64_t last, int64_t position, const std::string& why);
  bool distrusted(const std::string& id) const { return distrusted_.count(id) > 0; }
  // Draws whether to spot-check one span step (verify_rate).
  bool draw_verify();
  double verify_tolerance() const;
  // Measured round trip to a server (s); large when never measured.
  double rtt(const std::string& id) const {
    auto it = rtt_.find(id);
    return it == rtt_.end() ? 1e9 : it->second;
  }
  std::string id_hex() const { return rpc_->id().hex(); }

  struct Stats {
    int refreshes = 0, failures = 0, reroutes = 0, replayed_steps = 0;
    double last_recovery_s = 0;  // failure detected -> replacement chain ready
    int verifications = 0, verify_skipped = 0, mismatches = 0, liars = 0, unresolved = 0, rollbacks = 0;
  };
  Stats& stats() { return stats_; }

  // ---- loop plumbing (used by InferenceSession) ----
  Rpc& rpc() { return *rpc_; }
  // Runs the loop until done() is true or timeout_ms passes; false on timeout.
  bool run_until(const std::function<bool()>& done, uint32_t timeout_ms);
  void sleep_ms(uint32_t ms);
  // One call, blocking: ok() or the error. `result` gets the packed result.
  Reply call(const std::string& addr, const std::string& method, std::string args, uint32_t timeout_ms,
             std::string* result);
  void log(const std::string& s) const {
    if (opts_.log) opts_.log(s);
  }

 private:
  struct Ban {
    int failures = 0;
    uint64_t until_ms = 0;
  };
  SwarmClientOptions opts_;
  uv_loop_t loop_;
  std::unique_ptr<Rpc> rpc_;
  std::unique_ptr<DhtNode> dht_;
  ServerMap servers_;
  std::map<std::string, double> rtt_;  // id -> measured round trip (s)
  std::map<std::string, Ban> bans_;
  std::set<std::string> distrusted_;
  std::mt19937_64 verify_rng_;
  Stats stats_;
};

// One generation's worth of state on the swarm: a chain of server sessions
// that together hold the KV cache of every block.
class InferenceSession {
 public:
  // Routes and opens sessions able to hold max_length positions.
  InferenceSession(SwarmClient& client, int64_t max_length);
  ~InferenceSession();  // closes the server sessions (best effort)
  InferenceSession(const InferenceSession&) = delete;
  InferenceSession& operator=(const InferenceSession&) = delete;

  // Runs every block on hidden [n][n_embd] (in place) for the next n positions.
  // Throws Error only when no server can be found for some blocks for give_up_s.
  // Returns false only with rollback on, when a spot check found outputs of
  // earlier positions wrong: the session then holds position() < the old
  // position (all verified honest), `hidden` is untouched, and the caller
  // must regenerate from there.
  bool step(float* hidden, int64_t n);
  // Allows step() to roll back (the caller can regenerate tokens).
  void set_rollback(bool on) { rollback_ = on; }
  // Deep prompts of every block, [n_blocks][P][n_embd] (an adapter's): sent with
  // the step at position 0 (and its replays), which must carry at least P rows;
  // each server adds its blocks' prompts to those rows. Call before the first step.
  void set_prompts(std::vector<float> prompts, int64_t P);
  int64_t position() const { return position_; }
  int64_t max_length() const { return max_length_; }
  Route route() const;
  void close();

 private:
  struct Span {
    RouteHop hop;
    uint64_t session = 0;
    std::vector<float> inputs;   // every input sent so far [position][n_embd]
    std::vector<int64_t> steps;  // sizes of the steps they were sent in
    std::vector<float> outputs;  // every output received [position][n_embd] (spot checks compare them)
    // Spot checks: a session on another server holding these blocks, fed the
    // same inputs lazily (only what arrived since the last check), so a check
    // costs one batched request instead of a replay of the whole history.
    std::shared_ptr<Span> shadow;
    int64_t shadow_fed = 0;  // positions the shadow has seen (all checked)
  };
  // Replays span i's history on another server; -1 when all is well, else the
  // first position whose outputs were wrong (the session must restart there).
  int64_t spot_check(size_t i);
  // Sends rows [from, to) of `inputs` to the open session `s` in as few requests
  // as fit; `out` gets their outputs. False (and *err) on failure.
  bool feed(Span& s, const std::vector<float>& inputs, int64_t from, int64_t to, std::vector<float>& out,
            std::string* err);
  // Runs all of `inputs` through a fresh session on `srv` for blocks [first, last).
  bool run_on(const ServerInfo& srv, int64_t first, int64_t last, const std::vector<float>& inputs,
              std::vector<float>& out, std::string* err);
  // Closes every span and rebuilds the chain from span 0's first `keep` inputs.
  void rebuild(int64_t keep);
  // Opens sessions for blocks [from, to) and replays `inputs` (sent in `steps`) through them.
  std::vector<Span> open_chain(int64_t from, int64_t to, const std::vector<float>& inputs,
                               const std::vector<int64_t>& steps);
  bool open_span(Span& s, std::string* err);
  // One step through one span; false (and *err) when the server failed.
  bool send_step(Span& s, float* hidden, int64_t n, int64_t position, std::string* err);
  void close_span(Span& s);
  bool step_chunk(float* hidden, int64_t n);

  SwarmClient& c_;
  int64_t max_length_;
  int64_t position_ = 0;
  std::vector<float> prompts_;
  int64_t n_prompt_ = 0;
  bool rollback_ = false;
  std::vector<Span> spans_;
};

}  // namespace engine::net
