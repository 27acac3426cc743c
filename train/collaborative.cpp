#include "train/collaborative.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <csignal>
#include <random>
#include <thread>

#include "core/error.h"
#include "net/swarm_index.h"
#include "train/net_thread.h"
#include "train/progress_tracker.h"
#include "train/state_transfer.h"

namespace engine::train {

bool byzantine_from_name(const std::string& s, Byzantine* out) {
  static const std::pair<const char*, Byzantine> names[] = {{"none", Byzantine::None},
                                                            {"sign-flip", Byzantine::SignFlip},
                                                            {"scale", Byzantine::Scale},
                                                            {"random", Byzantine::Random},
                                                            {"delayed", Byzantine::Delayed},
                                                            {"epoch-lie", Byzantine::EpochLie}};
  for (auto& [n, b] : names)
    if (s == n) return *out = b, true;
  return false;
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// What a dishonest peer sends (BTARD's attacks), for the --byzantine test hook.
class Adversary {
 public:
  Adversary(Byzantine kind, int64_t delay, uint64_t seed) : kind_(kind), delay_(delay), rng_(seed) {}
  bool active() const { return kind_ != Byzantine::None; }
  // Called with each honest mean gradient, in step order; returns what to send.
  void corrupt(std::vector<float>& g) {
    switch (kind_) {
      case Byzantine::None:
      case Byzantine::EpochLie:  // lies in its progress record, not in its gradient
        return;
      case Byzantine::SignFlip:  // −1000× the honest gradient
        for (float& x : g) x *= -1000.0f;
        return;
      case Byzantine::Scale:  // +1000×: right direction, absurd size
        for (float& x : g) x *= 1000.0f;
        return;
      case Byzantine::Random: {  // a random direction with 1000× the honest norm
        double norm = 0;
        for (float x : g) norm += (double)x * x;
        std::normal_distribution<float> nd(0.0f, 1.0f);
        double rn = 0;
        for (float& x : g) x = nd(rng_), rn += (double)x * x;
        const float s = rn > 0 ? (float)(1000.0 * std::sqrt(norm / rn)) : 0.0f;
        for (float& x : g) x *= s;
        return;
      }
      case Byzantine::Delayed: {  // the gradient of `delay` steps ago (stale but plausible)
        past_.push_back(g);
        if ((int64_t)past_.size() > delay_ + 1) past_.pop_front();
        g = past_.front();
        return;
      }
    }
  }

 private:
  Byzantine kind_;
  int64_t delay_;
  std::mt19937_64 rng_;
  std::deque<std::vector<float>> past_;
};

std::string hex_id(const net::NodeId& id) {
  std::string s = "@";
  s += id.hex();  // (not "@" + hex(): GCC 12 warns -Wrestrict on that, wrongly)
  return s;
}

// The run's config travels as a msgpack map {"config": text}; the text is what a
// person reads when two peers disagree.
std::string pack_run_config(const std::string& text) {
  net::Buf b;
  net::Packer pk(b);
  pk.pack_map(1);
  net::pack_str(pk, "config");
  net::pack_str(pk, text);
  return b.s;
}
std::string run_config_text_of(const std::string& msgpack) {
  try {
    auto h = net::unpack_untrusted(msgpack.data(), msgpack.size());
    return std::string(net::as_str(net::need_field(h.get(), "config"), "config"));
  } catch (const Error&) {
    return "(unreadable)";
  }
}

class Peer {
 public:
  Peer(Trainer& t, const CollabConfig& cc) : t_(t), cc_(cc), adversary_(cc.byzantine, cc.byzantine_delay, 7) {}

  void run(const std::function<void(const CollabStepReport&)>& on_step,
           const std::function<void(int64_t)>& checkpoint);
  CollabTotals totals;

 private:
  void log(const std::string& s) const {
    if (cc_.log) cc_.log(s);
  }
  void start_network();
  void stop_network();
  void check_run_config();
  // Publishes our progress, then reads the run's; nullopt when the DHT did not answer.
  std::optional<GlobalProgress> exchange_progress(int64_t samples, double sps);
  // Downloads the state of a peer that reports exactly (epoch, xxh3) (xxh3 0: any
  // checksum at >= epoch) and checks the parameters it gets hash to xxh3; true when
  // the state was replaced.
  bool catch_up(const GlobalProgress& g, int64_t epoch, uint64_t xxh3);
  // Where the run is: the (epoch, checksum) reported by the most peers, ours
  // included (ties: the higher epoch, then the pair whose lowest reporter id is
  // lowest, so every peer breaks a tie the same way). A lone peer claiming a far
  // epoch, or a state no one else has, is not followed while others agree on another.
  struct RunPosition {
    int64_t epoch = -1;
    uint64_t xxh3 = 0;
    int votes = 0;
  };
  RunPosition run_position(const GlobalProgress& g) const;
  // After missing the epoch's group: polls until the run's position moves past
  // `epoch` (then downloads it), the other peers of the epoch are gone, or the
  // averaging timeout + the progress ttl pass.
  void wait_for_the_run(int64_t epoch);
  // After the last step: keeps serving our state while another peer of the run is
  // still behind (it may have missed the last group), at most twice the progress ttl.
  void linger();
  StateSnapshot snapshot();
  double evaluate() { return cc_.evaluate ? cc_.evaluate() : t_.evaluate(); }

  Trainer& t_;
  const CollabConfig& cc_;
  Adversary adversary_;
  std::unique_ptr<NetThread> own_net_;
  NetThread* net_ = nullptr;
  std::unique_ptr<ButterflyAllReduce> allreduce_;
  std::unique_ptr<Matchmaker> matchmaker_;
  std::unique_ptr<StateServer> state_server_;
  std::mutex state_mu_;  // the trainer's state, against the loop thread's snapshots
  StateSnapshot snap_;
  uint64_t params_xxh3_ = 0;
  std::string my_addr_;  // where peers reach us ("" in client mode)
  // Loop thread: our last progress record, re-published every ttl/3 so that it
  // stays alive through a long micro-batch, matchmaking or a state download; and
  // the run's config with it.
  std::optional<PeerProgress> latest_;
  // Trainer thread: peers whose state contradicted their progress record (they
  // claimed an epoch and had no state at it), with when we trust them again. Their
  // records neither vote on the run's position nor serve as download sources, so a
  // peer that lies about its epoch costs each honest peer one refused download.
  std::map<std::string, Clock::time_point> distrusted_;
  bool distrusted(const std::string& peer) const {
    auto it = distrusted_.find(peer);
    return it != distrusted_.end() && Clock::now() < it->second;
  }
  double last_loss_ = std::numeric_limits<double>::quiet_NaN();  // trainer thread: reported with the progress
  uv_timer_t* republish_ = nullptr;
  void publish_run_entry_now();  // loop thread: the run in the swarm's index (net/swarm_index.h)
  static void on_republish(uv_timer_t* t);
};

void Peer::publish_run_entry_now() {
  net::RunEntry e{cc_.run, cc_.parent_run, cc_.target_batch};
  net::DhtNode& dht = net_->dht();
  net::publish_run_entry(dht, e, dht.now() + cc_.progress_ttl_s, nullptr);
}

void Peer::on_republish(uv_timer_t* t) {
  Peer* self = (Peer*)t->data;
  self->publish_run_entry_now();
  if (self->latest_)
    publish_progress(self->net_->dht(), self->cc_.run, *self->latest_, self->cc_.progress_ttl_s, [](bool) {});
  for (const std::string* run : {&self->cc_.run, &self->cc_.parent_run})
    if (!run->empty())
      publish_run_config(self->net_->dht(), *run, pack_run_config(self->cc_.config_text), self->cc_.progress_ttl_s * 6,
                         [](bool) {});
}

StateSnapshot Peer::snapshot() {
  std::lock_guard<std::mutex> lock(state_mu_);
  if (snap_.epoch != t_.step() || !snap_.bytes) {
    snap_.epoch = t_.step();
    snap_.bytes = std::make_shared<const std::string>(serialize_state(t_.state()));
  }
  return snap_;
}

void Peer::start_network() {
  if (cc_.net) {
    net_ = cc_.net;
  } else {
    net::RpcOptions ro;
    ro.announce = cc_.announce;
    ro.identity = cc_.identity;
    ro.swarm_key = cc_.swarm_key;
    own_net_ = std::make_unique<NetThread>(cc_.client_mode ? std::string() : cc_.listen, cc_.initial_peers, ro);
    net_ = own_net_.get();
  }
  my_addr_ = cc_.client_mode ? std::string() : cc_.announce.empty() ? net_->address() : cc_.announce;
  const bool ok = net_->run(
      [this](std::function<void()> done) {
        allreduce_ = std::make_unique<ButterflyAllReduce>(net_->rpc());
        matchmaker_ = std::make_unique<Matchmaker>(net_->rpc(), net_->dht());
        if (!cc_.client_mode) state_server_ = std::make_unique<StateServer>(net_->rpc(), [this] { return snapshot(); });
        republish_ = new uv_timer_t;
        uv_timer_init(net_->rpc().loop(), republish_);
        republish_->data = this;
        const uint64_t every = (uint64_t)(cc_.progress_ttl_s * 1000 / 3);
        uv_timer_start(republish_, on_republish, every, every);
        publish_run_entry_now();
        done();
      },
      10000);
  if (!ok) throw Error("the network thread did not start");
  if (cc_.net) return;  // its owner told the user where it listens
  if (!cc_.client_mode)
    log("listening on " + net_->address() + " (others join with --initial-peers " + my_addr_ + ")");
  else log("client mode: not accepting connections");
}

void Peer::stop_network() {
  if (!net_) return;
  net_->run(
      [this](std::function<void()> done) {
        if (republish_) uv_close((uv_handle_t*)republish_, [](uv_handle_t* h) { delete (uv_timer_t*)h; });
        republish_ = nullptr;
        state_server_.reset();
        matchmaker_.reset();
        allreduce_.reset();
        done();
      },
      10000);
  own_net_.reset();
  net_ = nullptr;
}

void Peer::check_run_config() {
  if (!cc_.parent_run.empty())
    join_run_config(*net_, cc_.parent_run, cc_.config_text, cc_.progress_ttl_s * 6, cc_.join_timeout_s, cc_.log);
  join_run_config(*net_, cc_.run, cc_.config_text, cc_.progress_ttl_s * 6, cc_.join_timeout_s, cc_.log);
}

std::optional<GlobalProgress> Peer::exchange_progress(int64_t samples, double sps) {
  PeerProgress mine;
  mine.peer = hex_id(net_->id());
  mine.epoch = t_.step();
  mine.samples = samples;
  mine.samples_per_s = cc_.announced_rate ? cc_.announced_rate() : sps;
  mine.addr = my_addr_;
  mine.bandwidth = cc_.bandwidth;
  mine.client_mode = cc_.client_mode;
  mine.params_xxh3 = params_xxh3_;
  mine.loss = last_loss_;
  PeerProgress published = mine;
  if (cc_.byzantine == Byzantine::EpochLie) published.epoch += 1000, published.params_xxh3 ^= 0x5eed;  // test hook
  const uint32_t timeout = 10000;
  await<bool>(*net_, timeout, [this, published](std::function<void(bool)> done) {
    latest_ = published;  // what the republish timer keeps alive while we compute
    publish_progress(net_->dht(), cc_.run, published, cc_.progress_ttl_s, std::move(done));
  });
  auto g = await<GlobalProgress>(*net_, timeout, [this](std::function<void(GlobalProgress)> done) {
    fetch_progress(net_->dht(), cc_.run, [done](const GlobalProgress& g) { done(g); });
  });
  if (!g) return std::nullopt;
  // Our own record as we know it now, whatever copy the DHT returned.
  GlobalProgress& G = *g;
  auto it = std::find_if(G.records.begin(), G.records.end(), [&](const PeerProgress& p) { return p.peer == mine.peer; });
  if (it == G.records.end()) G.records.push_back(mine);
  else *it = mine;
  // The samples towards OUR epoch's target (not the highest epoch's: a liar's
  // far epoch must not decide when we step).
  G.epoch = run_position(G).epoch;
  G.samples_at_epoch = 0, G.samples_per_s = 0, G.peers = (int)G.records.size(), G.peers_at_epoch = 0;
  for (auto& p : G.records)
    if (p.epoch == t_.step()) G.samples_at_epoch += p.samples, G.samples_per_s += p.samples_per_s, G.peers_at_epoch++;
  return g;
}

void Peer::wait_for_the_run(int64_t epoch) {
  const double bound = cc_.allreduce.deadline_ms / 1000.0 + cc_.progress_ttl_s;
  const auto t0 = Clock::now();
  while (seconds_since(t0) < bound) {
    std::this_thread::sleep_for(std::chrono::duration<double>(cc_.progress_period_s));
    auto g = exchange_progress(0, 0);
    if (!g) continue;
    const RunPosition pos = run_position(*g);
    if (pos.epoch > epoch) {
      catch_up(*g, pos.epoch, pos.xxh3);
      return;
    }
    bool others_here = false;  // gone (records expired): the epoch is ours to finish
    for (auto& p : g->records) others_here |= p.epoch == epoch && p.peer != hex_id(net_->id());
    if (!others_here) return;
  }
}

Peer::RunPosition Peer::run_position(const GlobalProgress& g) const {
  struct Votes {
    int n = 0;
    std::string lowest;  // the lowest peer id reporting the pair
  };
  std::map<std::pair<int64_t, uint64_t>, Votes> votes;
  auto vote = [&](int64_t epoch, uint64_t xxh3, const std::string& peer) {
    Votes& v = votes[{epoch, xxh3}];
    if (v.n++ == 0 || peer < v.lowest) v.lowest = peer;
  };
  const std::string me = hex_id(net_->id());
  for (auto& p : g.records)
    if (p.peer != me && !distrusted(p.peer)) vote(p.epoch, p.params_xxh3, p.peer);
  vote(t_.step(), params_xxh3_, me);  // our own, as it is now
  RunPosition best;
  std::string best_lowest;
  for (auto& [key, v] : votes)
    if (v.n > best.votes || (v.n == best.votes && (key.first > best.epoch ||
                                                    (key.first == best.epoch && v.lowest < best_lowest)))) {
      best = {key.first, key.second, v.n};
      best_lowest = v.lowest;
    }
  return best;
}

bool Peer::catch_up(const GlobalProgress& g, int64_t epoch, uint64_t xxh3) {
  std::vector<PeerProgress> sources;
  for (auto& p : g.records)
    if (!p.addr.empty() && p.peer != hex_id(net_->id()) && !distrusted(p.peer) &&
        (xxh3 ? p.epoch == epoch && p.params_xxh3 == xxh3 : p.epoch >= epoch))
      sources.push_back(p);
  std::sort(sources.begin(), sources.end(),
            [](const PeerProgress& a, const PeerProgress& b) { return a.epoch > b.epoch; });
  const int64_t min_epoch = epoch;
  const uint64_t max_bytes = (uint64_t)t_.state().params.size() * 3 * sizeof(float) + (1u << 20);
  const uint32_t timeout = (uint32_t)(cc_.join_timeout_s * 1000);
  for (const PeerProgress& src : sources) {
    log("downloading state (epoch " + std::to_string(src.epoch) + ") from " + src.addr);
    const std::string addr = src.addr;
    auto r = await<DownloadResult>(*net_, timeout + 1000, [this, addr, min_epoch, timeout, max_bytes](
                                                              std::function<void(DownloadResult)> done) {
      download_state(net_->rpc(), addr, min_epoch, timeout, max_bytes, std::move(done));
    });
    if (!r || !r->ok) {
      log("state download from " + addr + " failed: " + (r ? r->error : std::string("timed out")));
      if (r && r->refused) {
        const double for_s = 2 * cc_.progress_ttl_s;
        distrusted_[src.peer] = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                   std::chrono::duration<double>(for_s));
        log("peer " + src.peer.substr(1, 8) + " reports epoch " + std::to_string(src.epoch) +
            " but has no state at it: ignoring its progress for " + std::to_string((int)for_s) + " s");
      }
      continue;
    }
    try {
      TrainState s = deserialize_state(r->bytes);
      t_.state().params.check_same_shape(s.params, "the downloaded state");  // shape and part
      // The state must be the one the run agrees on, not merely one that parses. (A
      // source of the agreed position may have stepped since: a later state from it
      // is taken, and the checksum comparison at that epoch vets it.)
      if (xxh3 && s.step == epoch && s.params.checksum() != xxh3)
        throw Error("its parameters are not the ones the run reports for epoch " + std::to_string(epoch));
      std::lock_guard<std::mutex> lock(state_mu_);
      t_.state() = std::move(s);
      params_xxh3_ = t_.state().params.checksum();
      log("state loaded: epoch " + std::to_string(t_.step()));
      totals.state_downloads++;
      return true;
    } catch (const Error& e) {
      log("state from " + addr + " refused: " + e.what());
    }
  }
  return false;
}

void Peer::run(const std::function<void(const CollabStepReport&)>& on_step,
               const std::function<void(int64_t)>& checkpoint) {
  start_network();
  struct Stop {
    Peer* p;
    ~Stop() { p->stop_network(); }
  } stop{this};
  check_run_config();
  params_xxh3_ = t_.state().params.checksum();

  const PretrainConfig& cfg = t_.config();
  // Join: a run further along than our state hands us its state first.
  if (auto g = exchange_progress(0, 0)) {
    const RunPosition pos = run_position(*g);
    if (pos.epoch > t_.step()) catch_up(*g, pos.epoch, pos.xxh3);
  }

  const int64_t P = t_.state().params.size();
  std::vector<float> grad((size_t)P);
  // This peer's data position: micro-batch k draws batch_for_step(data_seed, k).
  uint64_t data_seed = cc_.data_seed;
  if (data_seed == 0)
    for (int i = 0; i < 8; i++) data_seed = (data_seed << 8) | net_->id().b[i];
  int64_t micro = 0;
  const float token_scale = 1.0f / (float)(cc_.target_batch * cfg.seqlen);
  const auto t_start = Clock::now();
  StepReport first;
  first.step = t_.step(), first.steps = cfg.steps;
  first.eval_loss = evaluate();
  first.has_eval = std::isfinite(first.eval_loss);
  on_step(CollabStepReport{first});
  GradientSource* const source = cc_.source;

  while (t_.step() < cfg.steps) {
    if (cc_.should_stop && cc_.should_stop()) break;
    // ---- accumulate until the run's samples at this epoch reach the target ----
    std::fill(grad.begin(), grad.end(), 0.0f);
    int64_t local_samples = 0, tokens = 0;
    double loss_sum = 0;
    bool moved_on = false, repaired = false;
    const auto t_step = Clock::now();
    auto last_poll = Clock::now() - std::chrono::hours(1);
    // What the other peers had at the last look, and how fast they go: between looks,
    // the run's total is extrapolated (hivemind's progress tracker does the same), so
    // a peer asks again as soon as the target may be reached, not a period later.
    double others_samples = 0, others_rate = 0;
    int peers_at_epoch = 0;  // as the last look saw them: whom matchmaking should expect
    bool stopped = false;
    bool source_open = source != nullptr;
    if (source) source->open(t_.step(), grad.data());
    // Ends the source's epoch once: from then on nothing touches grad or the parameters.
    auto close_source = [&] {
      if (!source_open) return;
      source_open = false;
      const GradientSource::Got got = source->close();
      local_samples += got.samples, tokens += got.tokens, loss_sum += got.loss_sum;
    };
    for (;;) {
      if (source) {
        // Another process computes: wait for what it adds, at most until the next look.
        const double wait = std::max(0.0, cc_.progress_period_s - seconds_since(last_poll));
        const GradientSource::Got got = source->collect(std::min(wait, cc_.progress_period_s));
        local_samples += got.samples, tokens += got.tokens, loss_sum += got.loss_sum;
        if (cc_.should_stop && cc_.should_stop()) {
          stopped = true;
          break;
        }
      } else {
        const auto windows = batch_for_step(t_.data(), data_seed, micro++, cfg.batch, cfg.seqlen);
        // Scaled as one process scales a batch of target_batch windows, so a lone peer
        // whose micro-batch is the target batch computes exactly what engine train does.
        const CrossEntropyResult r = t_.accumulate(windows, token_scale, grad.data());
        local_samples += (int64_t)windows.size(), tokens += r.n_scored, loss_sum += r.loss_sum;
      }
      if (cc_.die_at_epoch == t_.step() && !cc_.die_in_round && local_samples > 0) {
        log("TEST HOOK: SIGKILL in the middle of epoch " + std::to_string(t_.step()));
        std::raise(SIGKILL);
      }
      const double since = seconds_since(last_poll);
      const double estimate = (double)local_samples + others_samples + others_rate * std::min(since, 60.0);
      const bool counts = !source || source->counts_toward_target();
      if (since < cc_.progress_period_s && (!counts || estimate < (double)cc_.target_batch)) continue;
      last_poll = Clock::now();
      const double my_rate = local_samples / std::max(seconds_since(t_step), 1e-3);
      if (tokens > 0 && loss_sum > 0) last_loss_ = loss_sum / (double)tokens;  // a stage peer reports none
      auto g = exchange_progress(local_samples, my_rate);
      if (!g) continue;  // the DHT is slow: keep computing, ask again later
      const RunPosition pos = run_position(*g);
      if (pos.epoch > t_.step()) {  // the run stepped without us
        log("behind: run at epoch " + std::to_string(pos.epoch) + ", this peer at " + std::to_string(t_.step()));
        close_source();  // nothing may read the parameters while they are replaced
        if (!catch_up(*g, pos.epoch, pos.xxh3))  // no source answered: ask again a period later
          std::this_thread::sleep_for(std::chrono::duration<double>(cc_.progress_period_s));
        moved_on = true;
        break;
      }
      others_samples = std::max(0.0, (double)(g->samples_at_epoch - local_samples));
      peers_at_epoch = g->peers_at_epoch;
      others_rate = std::max(0.0, g->samples_per_s - my_rate);
      if (pos.epoch == t_.step() && pos.xxh3 != params_xxh3_) {  // our parameters are in the minority
        log("parameters differ from the run's (xxh3 " + std::to_string(params_xxh3_) + " vs " +
            std::to_string(pos.xxh3) + "): reloading state");
        close_source();
        repaired = catch_up(*g, t_.step(), pos.xxh3);
        if (!repaired && source) source->open(t_.step(), grad.data()), source_open = true;
        if (repaired) break;
      }
      // Each peer at the epoch takes an equal share of what is missing (the next look
      // hands out what a slower one left), so the group overshoots the target by at
      // most the work its peers have in flight.
      if (source)
        source->hint_remaining((cc_.target_batch - g->samples_at_epoch + std::max(1, g->peers_at_epoch) - 1) /
                               std::max(1, g->peers_at_epoch));
      if (source && source->epoch_over(t_.step())) break;
      if ((!source || source->counts_toward_target()) && g->samples_at_epoch >= cc_.target_batch) break;
    }
    close_source();  // what came in while we looked at the DHT counts too
    totals.computed += local_samples;
    if (moved_on || repaired || stopped) {  // start the epoch again on the new state
      totals.discarded += local_samples;
      if (stopped) break;
      continue;
    }

    // ---- match, all-reduce, step ----
    CollabStepReport rep;
    rep.local_samples = local_samples;
    const auto t_match = Clock::now();
    GroupMember me{net_->id(), my_addr_, cc_.bandwidth, cc_.client_mode};
    const int64_t epoch = t_.step();
    // Matchmaking announces our samples (so every member learns the group's total);
    // the all-reduce weighs by the tokens behind each mean gradient.
    // A stage peer that no micro-batch reached this epoch still takes part (to get
    // the average), with a zero gradient of negligible weight.
    const double weight = std::max((double)tokens, 1e-6);
    const double my_samples = std::max((double)local_samples, 1e-6);
    MatchmakingConfig mmc = cc_.matchmaking;
    mmc.expected_peers = peers_at_epoch;
    auto spec = await<RoundSpec>(*net_, mmc.gather_ms + mmc.join_window_ms + 2 * mmc.rpc_timeout_ms + 5000,
                                 [this, me, epoch, my_samples, mmc](std::function<void(RoundSpec)> done) {
                                   matchmaker_->form_group(cc_.run, epoch, me, my_samples, mmc, std::move(done));
                                 });
    if (!spec) {  // the loop thread is stuck: average alone rather than hang
      spec = RoundSpec{"solo", {me}, 0};
      spec->members[0].weight = my_samples;
    }
    rep.matchmaking_s = seconds_since(t_match);
    if (spec->members.size() == 1 && peers_at_epoch > 1) {
      // Others are at this epoch but no group took us: theirs closed before we came.
      // Stepping alone would fork the run; wait for their step and download it.
      log("no group for epoch " + std::to_string(epoch) + " (the others' group had closed): waiting for their step");
      totals.discarded += local_samples;
      wait_for_the_run(epoch);
      continue;
    }
    totals.contributed += local_samples;
    rep.group_size = (int)spec->members.size();
    for (const GroupMember& m : spec->members) rep.group_samples += (int64_t)m.weight;

    // The mean over the tokens this peer actually scored (1 exactly when it did the target batch alone).
    std::vector<float> mean(grad);
    const double expected = (double)cc_.target_batch * (double)cfg.seqlen;
    if (tokens > 0 && (double)tokens != expected) {
      const float rescale = (float)(expected / (double)tokens);
      for (float& x : mean) x *= rescale;
    }
    std::function<void(std::vector<float>&)> corrupt;
    if (adversary_.active()) corrupt = [this](std::vector<float>& v) { adversary_.corrupt(v); };
    const AllReduceConfig arc = cc_.allreduce;
    const auto t_ar = Clock::now();
    log("epoch " + std::to_string(epoch) + ": group of " + std::to_string(spec->members.size()) + " (" +
        std::to_string(rep.group_samples) + " samples), all-reduce");
    if (cc_.die_at_epoch == epoch && cc_.die_in_round) {  // while our parts are on their way
      log("TEST HOOK: SIGKILL 3 ms into the all-reduce of epoch " + std::to_string(epoch));
      std::thread([] {
        std::this_thread::sleep_for(std::chrono::milliseconds(3));
        std::raise(SIGKILL);
      }).detach();
    }
    RoundSpec round = *spec;
    auto result = await<AllReduceResult>(*net_, arc.deadline_ms + 5000,
                                         [this, round, mean, weight, arc, corrupt](std::function<void(AllReduceResult)> done) mutable {
                                           allreduce_->all_reduce(round, std::move(mean), weight, arc, std::move(done),
                                                                  corrupt);
                                         });
    rep.allreduce_s = seconds_since(t_ar);
    std::vector<float>& avg = result ? result->averaged : mean;
    if (result) {
      rep.parts_failed = result->parts_failed;
      rep.dropped = (int)result->dropped.size();
      rep.bytes_sent = result->bytes_sent, rep.bytes_received = result->bytes_received;
    } else {
      log("all-reduce did not finish: stepping with the local gradient (the checksum check repairs it)");
    }
    if (avg.size() != (size_t)P) avg = mean;
    {
      std::lock_guard<std::mutex> lock(state_mu_);
      rep.step.grad_norm = t_.apply_step(avg.data(), &rep.step.lr);
      t_.state().samples += rep.group_samples;  // the run's samples: what a state download carries on
      params_xxh3_ = t_.state().params.checksum();
    }
    rep.params_xxh3 = params_xxh3_;
    rep.step.step = t_.step(), rep.step.steps = cfg.steps;
    rep.step.loss = tokens > 0 ? loss_sum / (double)tokens : 0;
    rep.step.tokens = tokens;
    rep.step.seconds = seconds_since(t_step);
    rep.step.elapsed = seconds_since(t_start);
    const bool last = t_.step() == cfg.steps;
    // Tell the run we stepped (samples 0 at the new epoch, with our checksum) right away,
    // so slower peers see the new epoch and the others can compare checksums (and a
    // SWARM stage follows the trainers' epoch before they evaluate through it).
    exchange_progress(0, 0);
    if (last || (cfg.eval_every > 0 && t_.step() % cfg.eval_every == 0)) {
      rep.step.eval_loss = evaluate();
      rep.step.has_eval = std::isfinite(rep.step.eval_loss);
    }
    on_step(rep);
    if (checkpoint && cfg.checkpoint_every > 0 && t_.step() % cfg.checkpoint_every == 0 && !last)
      checkpoint(t_.step());
  }
  if (!(cc_.should_stop && cc_.should_stop())) linger();
}

void Peer::linger() {
  // A peer that missed the last group can only finish by downloading the final state:
  // serve it while a peer of the run is still behind (bounded).
  if (cc_.client_mode) return;
  const auto t0 = Clock::now();
  while (seconds_since(t0) < cc_.progress_ttl_s * 2) {
    auto g = exchange_progress(0, 0);
    if (!g) return;
    bool someone_behind = false;
    for (auto& p : g->records) someone_behind |= p.epoch < t_.step() && p.peer != hex_id(net_->id());
    if (!someone_behind) return;
    std::this_thread::sleep_for(std::chrono::duration<double>(cc_.progress_period_s));
  }
}

}  // namespace

void join_run_config(NetThread& net, const std::string& run, const std::string& config_text, double ttl_s,
                     double timeout_s, const std::function<void(const std::string&)>& log) {
  const uint32_t timeout = (uint32_t)(timeout_s * 1000);
  const std::string mine = pack_run_config(config_text);
  auto theirs = await<std::optional<std::string>>(
      net, timeout, [&net, run](std::function<void(std::optional<std::string>)> done) {
        fetch_run_config(net.dht(), run, [done](const std::optional<std::string>& c) { done(c); });
      });
  if (!theirs) throw Error("run '" + run + "': the DHT did not answer (is --initial-peers right?)");
  if (*theirs && !same_run_config(**theirs, mine))
    throw Error("run '" + run + "' trains another model or optimizer config than this peer's flags give:\n  run:  " +
                run_config_text_of(**theirs) + "\n  this: " + config_text);
  if (!*theirs && log) log("no peer runs '" + run + "' yet: this peer starts it");
  auto put = await<bool>(net, timeout, [&net, run, mine, ttl_s](std::function<void(bool)> done) {
    publish_run_config(net.dht(), run, mine, ttl_s, std::move(done));
  });
  if ((!put || !*put) && log) log("warning: could not publish the run's config (continuing)");
}

CollabTotals collaborative_train(Trainer& t, const CollabConfig& cc,
                                 const std::function<void(const CollabStepReport&)>& on_step,
                                 const std::function<void(int64_t step)>& checkpoint) {
  Peer peer(t, cc);
  peer.run(on_step, checkpoint);
  return peer.totals;
}

}  // namespace engine::train
