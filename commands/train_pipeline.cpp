// engine train --swarm --stages N (--stage K|auto | --trainer): SWARM pipeline
// training. Stage peers hold a stage's blocks and serve them (train/stage_server.h),
// trainers hold the embedding and head and push their data through the stages
// (train/pipeline.h); each role averages with the other peers of its role through
// the collaborative averager (train/collaborative.h) under its own DHT run
// ("<run>.s<k>", "<run>.trainers"), all under one config ("<run>.config").
// Stage peers move to the slowest stage every --rebalance-period (docs/training.md).
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <thread>

#include "commands/train_flags.h"
#include "commands/train_swarm_flags.h"
#include "core/error.h"
#include "core/split_mix.h"
#include "core/thread_pool.h"
#include "train/net_thread.h"
#include "train/pipeline.h"
#include "train/stage_server.h"
#include "train/state_transfer.h"

namespace engine {

using namespace engine::train;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

void say(const CollabFlags& cf, const std::string& s) {
  if (cf.verbose) std::fprintf(stderr, "swarm: %s\n", s.c_str());
}

GlobalProgress read_progress(NetThread& net, const std::string& run) {
  auto g = await<GlobalProgress>(net, 10000, [&net, run](std::function<void(GlobalProgress)> done) {
    fetch_progress(net.dht(), run, [done](const GlobalProgress& g) { done(g); });
  });
  return g ? *g : GlobalProgress{};
}

// ---- where the stages stand ------------------------------------------------------

struct StageLoad {
  int peers = 0;
  double capacity = 0;  // Σ samples/s the stage's peers announce (unknown: the run's mean)
  std::vector<PeerProgress> records;
};

std::vector<StageLoad> read_stage_loads(NetThread& net, const std::string& run, int64_t stages) {
  std::vector<StageLoad> loads((size_t)stages);
  double known = 0;
  int n_known = 0;
  for (int64_t k = 0; k < stages; k++) {
    loads[k].records = read_progress(net, stage_run(run, k)).records;
    loads[k].peers = (int)loads[k].records.size();
    for (auto& r : loads[k].records)
      if (r.samples_per_s > 0) known += r.samples_per_s, n_known++;
  }
  // A peer that has not served yet announces 0: count it as an average peer, so a
  // stage of newcomers does not look empty.
  const double mean = n_known ? known / n_known : 1.0;
  for (auto& l : loads)
    for (auto& r : l.records) l.capacity += r.samples_per_s > 0 ? r.samples_per_s : mean;
  return loads;
}

// The stage with the least throughput (no peers: the least of all). Ties go by
// `salt` (a peer's id), so peers that start together spread over the empty stages
// instead of all taking the first.
int64_t choose_stage(const std::vector<StageLoad>& loads, uint64_t salt = 0) {
  std::vector<int64_t> least;
  for (int64_t k = 0; k < (int64_t)loads.size(); k++) {
    if (!least.empty() && loads[k].capacity > loads[least[0]].capacity) continue;
    if (!least.empty() && loads[k].capacity < loads[least[0]].capacity) least.clear();
    least.push_back(k);
  }
  return least[salt % least.size()];
}

// Petals' rule, for stages: move when it raises the pipeline's throughput (the
// slowest stage's) and the stage we leave keeps a peer. Only the lowest-id peer of
// the richest stage moves in one period, so peers do not all jump at once (its old
// record, until it expires, keeps the others from following too soon).
int64_t rebalance_target(const std::vector<StageLoad>& loads, int64_t mine, const std::string& my_id, double my_cap,
                         double threshold) {
  const int64_t slow = choose_stage(loads);
  // A stage nobody serves stops the whole pipeline: fill it at once.
  const bool empty = loads[slow].peers == 0;
  if (my_cap <= 0 && !empty) return -1;  // not measured yet
  int64_t rich = 0;
  for (int64_t k = 1; k < (int64_t)loads.size(); k++)
    if (loads[k].capacity > loads[rich].capacity) rich = k;
  if (slow == mine || rich != mine || loads[mine].peers < 2) return -1;
  for (auto& r : loads[mine].records)
    if (r.peer < my_id) return -1;  // a lower id moves first
  if (empty) return slow;
  const double after_leave = loads[mine].capacity - my_cap, after_join = loads[slow].capacity + my_cap;
  if (loads[slow].capacity >= threshold * after_leave) return -1;  // not slow enough to matter
  if (std::min(after_leave, after_join) <= loads[slow].capacity) return -1;  // no gain
  return slow;
}

// ---- stage peer ------------------------------------------------------------------

int run_stage_peer(TrainFlags& f, const CollabFlags& cf, TrainSetup& s, NetThread& net, const CollabConfig& base) {
  const LlamaHParams hp = s.state.params.hp;
  ThreadPool pool(f.threads);
  int64_t k = -1;
  if (cf.stage == "auto") {
    k = choose_stage(read_stage_loads(net, cf.run, cf.stages), name_hash(net.id().hex()));
    std::fprintf(stderr, "train: --stage auto: stage %lld has the least throughput\n", (long long)k);
  } else {
    char* end = nullptr;
    k = std::strtoll(cf.stage.c_str(), &end, 10);
    if (cf.stage.empty() || *end || k < 0 || k >= cf.stages)
      throw Error("--stage is auto or a stage in 0.." + std::to_string(cf.stages - 1) + ", not '" + cf.stage + "'");
  }
  const TextData no_data;  // a stage peer reads no text: its gradients come from the trainers
  std::string my_id = "@";
  my_id += net.id().hex();
  int moves = 0;
  for (;;) {
    const PartSpec spec = stage_part(hp, (int)cf.stages, (int)k);
    TrainState st;
    st.params = extract_part(s.state.params, spec);
    st.seed = s.state.seed;
    Trainer t(std::move(st), no_data, f.cfg, pool);
    StageServerConfig sc;
    sc.run = cf.run, sc.stage = k, sc.max_n = f.cfg.seqlen, sc.throttle = cf.throttle;
    sc.trainers_poll_s = cf.progress_period_s;
    sc.serve = cf.byzantine_serve;
    if (cf.test_die.rfind("fwd:", 0) == 0 || cf.test_die.rfind("bwd:", 0) == 0) {
      sc.die_at_epoch = std::strtoll(cf.test_die.c_str() + 4, nullptr, 10);
      sc.die_in_forward = cf.test_die[0] == 'f';
    }
    if (cf.verbose) sc.log = [](const std::string& s) { std::fprintf(stderr, "swarm: %s\n", s.c_str()); };
    StageServer server(net, t, pool, sc);
    std::fprintf(stderr, "train: stage %lld of %lld (%s, %.2f M parameters) on %s\n", (long long)k,
                 (long long)cf.stages, spec.describe().c_str(), (double)t.state().params.size() / 1e6,
                 net.address().c_str());
    CollabConfig cc = base;
    cc.run = stage_run(cf.run, k);
    cc.source = &server;
    cc.evaluate = [] { return (double)NAN; };
    cc.announced_rate = [&server] { return server.capacity(); };
    int64_t move_to = -1;
    auto last_check = Clock::now();
    const auto joined = Clock::now();
    cc.should_stop = [&] {
      if (move_to >= 0) return true;
      if (cf.rebalance_period_s <= 0 || seconds_since(last_check) < cf.rebalance_period_s) return false;
      last_check = Clock::now();
      const auto loads = read_stage_loads(net, cf.run, cf.stages);
      bool some_empty = false;
      for (auto& l : loads) some_empty |= l.peers == 0;
      if (seconds_since(joined) < 2 * cf.rebalance_period_s && !some_empty) return false;  // measure before judging
      move_to = rebalance_target(loads, k, my_id, server.capacity(), cf.rebalance_threshold);
      if (cf.verbose) {
        std::string line = "rebalance check: stage throughput";
        for (size_t i = 0; i < loads.size(); i++) {
          char buf[64];
          std::snprintf(buf, sizeof buf, " %zu:%.1f/s (%d peers)", i, loads[i].capacity, loads[i].peers);
          line += buf;
        }
        say(cf, line + (move_to >= 0 ? ": moving to stage " + std::to_string(move_to) : ": staying"));
      }
      return move_to >= 0;
    };
    collaborative_train(
        t, cc,
        [&](const CollabStepReport& r) {
          if (r.step.seconds <= 0) return;  // the report before the first step
          const StageServer::Totals tt = server.totals();
          std::fprintf(stderr,
                       "train: stage %lld step %lld/%lld  group %d (%lld samples, %lld here)  |g| %.2f  "
                       "%.1f samples/s capacity  fwd %lld bwd %lld stale %lld  xxh3 %016" PRIx64 "\n",
                       (long long)k, (long long)r.step.step, (long long)f.cfg.steps, r.group_size,
                       (long long)r.group_samples, (long long)r.local_samples, r.step.grad_norm, server.capacity(),
                       (long long)tt.forwards, (long long)tt.backwards, (long long)tt.stale, r.params_xxh3);
        },
        nullptr);
    if (move_to >= 0) {
      std::fprintf(stderr, "train: rebalancing: moving from stage %lld to stage %lld\n", (long long)k,
                   (long long)move_to);
      k = move_to;
      moves++;
      continue;
    }
    // Done: the trainers still evaluate through us and download our stage for their
    // model file. Serve both until their progress records are gone (bounded).
    std::vector<float> scratch((size_t)t.state().params.size());
    server.open(t.step(), scratch.data());
    const auto snap = std::make_shared<const std::string>(serialize_state(t.state()));
    const int64_t epoch = t.step();
    std::unique_ptr<StateServer> states;
    net.run(
        [&](std::function<void()> done) {
          states = std::make_unique<StateServer>(net.rpc(), [snap, epoch] { return StateSnapshot{epoch, snap}; });
          done();
        },
        10000);
    const auto t0 = Clock::now();
    while (seconds_since(t0) < 120) {
      if (read_progress(net, trainers_run(cf.run)).records.empty()) break;
      std::this_thread::sleep_for(std::chrono::duration<double>(cf.progress_period_s));
    }
    net.run(
        [&](std::function<void()> done) {
          states.reset();
          done();
        },
        10000);
    server.close();
    const StageServer::Totals tt = server.totals();
    std::fprintf(stderr,
                 "train: stage peer done: stage %lld at step %lld, %lld forwards, %lld backwards, %lld stale, %lld "
                 "malformed requests, %d moves\n",
                 (long long)k, (long long)t.step(), (long long)tt.forwards, (long long)tt.backwards,
                 (long long)tt.stale, (long long)tt.bad, moves);
    return 0;
  }
}

// ---- trainer ---------------------------------------------------------------------

const char* kPipelineColumns = "local_samples,group,completed,dropped_stale,dropped_failed,bans,act_bytes_sent";

// Every stage's final state from a peer of it, with ours: the whole model.
TrainState gather_model(NetThread& net, const CollabFlags& cf, const TrainState& mine, const LlamaHParams& hp,
                        int64_t steps) {
  TrainState whole;
  whole.params = ModelParams::layout(hp);
  whole.opt.m.assign(whole.params.data.size(), 0.0f);
  whole.opt.v.assign(whole.params.data.size(), 0.0f);
  whole.step = mine.step, whole.seed = mine.seed, whole.samples = mine.samples;
  auto put = [&](const TrainState& part) {
    insert_part(whole.params, part.params);
    for (int which = 0; which < 2; which++) {
      ModelParams w = whole.params, p = part.params;
      w.data = which ? whole.opt.v : whole.opt.m;
      p.data = which ? part.opt.v : part.opt.m;
      insert_part(w, p);
      (which ? whole.opt.v : whole.opt.m) = std::move(w.data);
    }
  };
  put(mine);
  for (int64_t k = 0; k < cf.stages; k++) {
    const PartSpec spec = stage_part(hp, (int)cf.stages, (int)k);
    bool got = false;
    const auto t0 = Clock::now();
    while (!got && seconds_since(t0) < 60) {
      for (const PeerProgress& r : read_progress(net, stage_run(cf.run, k)).records) {
        if (r.addr.empty() || r.epoch < steps) continue;
        const std::string addr = r.addr;
        const uint64_t max_bytes = (uint64_t)ModelParams::layout_part(hp, spec).size() * 12 + (1u << 20);
        auto d = await<DownloadResult>(net, 31000, [&net, addr, steps, max_bytes](std::function<void(DownloadResult)> done) {
          download_state(net.rpc(), addr, steps, 30000, max_bytes, std::move(done));
        });
        if (!d || !d->ok) continue;
        try {
          TrainState part = deserialize_state(d->bytes);
          if (!(part.params.part == spec)) throw Error("it holds " + part.params.part.describe());
          part.params.check_same_shape(hp, "stage " + std::to_string(k));
          put(part);
          got = true;
          break;
        } catch (const Error& e) {
          std::fprintf(stderr, "train: stage %lld's state from %s refused: %s\n", (long long)k, addr.c_str(), e.what());
        }
      }
      if (!got) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    if (!got) throw Error("no peer of stage " + std::to_string(k) + " handed over its final weights");
  }
  return whole;
}

int run_trainer(TrainFlags& f, const CollabFlags& cf, TrainSetup& s, NetThread& net, const CollabConfig& base) {
  const LlamaHParams hp = s.state.params.hp;
  ThreadPool pool(f.threads);
  TrainState st;
  st.params = extract_part(s.state.params, trainer_part());
  st.seed = s.state.seed;
  Trainer t(std::move(st), s.data, f.cfg, pool);
  PipelineConfig pc;
  pc.run = cf.run, pc.stages = cf.stages, pc.seqlen = f.cfg.seqlen, pc.target_batch = base.target_batch;
  if (!act_dtype_from_name(cf.wire, &pc.wire)) throw Error("--wire-dtype is f32, f16, bf16 or int8, not '" + cf.wire + "'");
  if (cf.verbose) pc.log = [](const std::string& s) { std::fprintf(stderr, "swarm: %s\n", s.c_str()); };
  Pipeline pipe(net, t.state().params, pool, pc);
  uint64_t data_seed = cf.data_seed;
  if (data_seed == 0)
    for (int i = 0; i < 8; i++) data_seed = (data_seed << 8) | net.id().b[i];
  const int inflight = cf.inflight > 0 ? cf.inflight : (int)cf.stages + 1;
  TrainerSource source(pipe, t, pool, f.cfg.batch, data_seed, inflight, base.target_batch);
  CollabConfig cc = base;
  cc.run = trainers_run(cf.run);
  cc.source = &source;
  cc.evaluate = [&] { return pipe.evaluate(t.heldout(), t.step()); };
  std::fprintf(stderr, "train: trainer of run '%s': %lld stages, micro-batch %lld, %d in flight, target batch %lld, "
               "activations %s\n", cf.run.c_str(), (long long)cf.stages, (long long)f.cfg.batch, inflight,
               (long long)base.target_batch, act_dtype_name(pc.wire));
  TrainReporter rep(f, t, kPipelineColumns);
  const auto t0 = Clock::now();
  collaborative_train(
      t, cc,
      [&](const CollabStepReport& r) {
        const PipelineTotals pt = pipe.totals();
        char extra[256] = "";
        if (r.step.tokens)
          std::snprintf(extra, sizeof extra, "%lld,%d,%lld,%lld,%lld,%lld,%llu", (long long)r.local_samples,
                        r.group_size, (long long)pt.completed, (long long)pt.dropped_stale,
                        (long long)pt.dropped_failed, (long long)pt.bans, (unsigned long long)pt.bytes_sent);
        rep.report(r.step, t.state(), extra);
        if (r.step.tokens && cf.verbose)
          std::fprintf(stderr,
                       "swarm: trainer step %lld: group %d (%lld samples, %lld here), matchmaking %.2fs, all-reduce "
                       "%.2fs, %lld completed, %lld dropped, %lld retries, %lld bans\n",
                       (long long)r.step.step, r.group_size, (long long)r.group_samples, (long long)r.local_samples,
                       r.matchmaking_s, r.allreduce_s, (long long)pt.completed,
                       (long long)(pt.dropped_stale + pt.dropped_failed), (long long)pt.retries, (long long)pt.bans);
      },
      nullptr);
  const double secs = seconds_since(t0);
  const PipelineTotals pt = pipe.totals();
  std::fprintf(stderr,
               "train: trainer done: %lld micro-batches completed, %lld dropped (stale epoch), %lld dropped (failed), "
               "%lld retries, %lld bans; activations %.1f MB sent, %.1f MB received in %.1fs\n",
               (long long)pt.completed, (long long)pt.dropped_stale, (long long)pt.dropped_failed,
               (long long)pt.retries, (long long)pt.bans, pt.bytes_sent / 1e6, pt.bytes_received / 1e6, secs);
  if (!f.out.empty()) {
    TrainState whole = gather_model(net, cf, t.state(), hp, f.cfg.steps);
    save_training_checkpoint(f, s, whole);
    rep.finish(whole);
  } else {
    rep.finish(t.state());
  }
  return 0;
}

}  // namespace

int train_pipeline(TrainFlags& f, const CollabFlags& cf_in, TrainSetup& s) {
  CollabFlags cf = cf_in;
  const LlamaHParams& hp = s.state.params.hp;
  if (cf.stages > hp.n_layer)
    throw Error("--stages " + std::to_string(cf.stages) + ": the model has only " + std::to_string(hp.n_layer) + " blocks");
  if (!(cf.throttle >= 1)) throw Error("--throttle must be >= 1");
  if (!cf.byzantine_serve.empty() && cf.byzantine_serve != "nan" && cf.byzantine_serve != "shape")
    throw Error("--byzantine-serve is nan or shape, not '" + cf.byzantine_serve + "'");
  if (!cf.byzantine_serve.empty() && cf.stage.empty()) throw Error("--byzantine-serve is for stage peers (--stage)");
  if (cf.rebalance_period_s < 0 || !(cf.rebalance_threshold > 0 && cf.rebalance_threshold <= 1))
    throw Error("--rebalance-period must be >= 0 and --rebalance-threshold in (0, 1]");
  ActDType act;
  if (!act_dtype_from_name(cf.wire, &act)) throw Error("--wire-dtype is f32, f16, bf16 or int8, not '" + cf.wire + "'");
  const std::string text = run_config_text(f, s, cf.target_batch > 0 ? cf.target_batch : f.cfg.batch, cf);
  // Averaging inside a role: the same precision as the activations (bf16 averages as f16).
  CollabFlags avg = cf;
  if (avg.wire == "bf16") avg.wire = "f16";
  CollabConfig base = avg.config(f.cfg.batch, text);
  base.parent_run = cf.run;
  net::RpcOptions ro;
  ro.announce = cf.announce;
  cf.security.apply(ro);
  if (cf.client_mode) throw Error("--client-mode is not supported for SWARM roles (stage peers must accept calls)");
  NetThread net(cf.listen, base.initial_peers, ro);
  base.net = &net;
  std::fprintf(stderr, "train: listening on %s (others join with --initial-peers %s)\n", net.address().c_str(),
               (cf.announce.empty() ? net.address() : cf.announce).c_str());
  // Every role checks the run's one config before anything else.
  join_run_config(net, cf.run, text, base.progress_ttl_s * 6, base.join_timeout_s, base.log);
  return cf.trainer ? run_trainer(f, cf, s, net, base) : run_stage_peer(f, cf, s, net, base);
}

}  // namespace engine
