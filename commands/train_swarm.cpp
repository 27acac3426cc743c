// engine train --swarm: the collaborative run (train/collaborative.h) of the model
// the shared flags describe. Progress lines, CSV log and chart as the single-process
// run, plus the swarm's columns (this peer's samples, the group, the parameters'
// checksum, the averaging round's time and bytes).
#include <cinttypes>
#include <cstdio>
#include <string>

#include "commands/train_flags.h"
#include "commands/train_swarm_flags.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace engine {

using namespace engine::train;

// What every peer of a run must agree on: the model, its initialisation and the
// optimizer's schedule. The micro-batch, threads and data are each peer's own.
std::string run_config_text(const TrainFlags& f, const TrainSetup& s, int64_t target_batch, const CollabFlags& cf) {
  const LlamaHParams& hp = s.state.params.hp;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "dim=%lld ffn=%lld layers=%lld heads=%lld kv_heads=%lld vocab=%lld(%s) ctx=%lld rope_base=%g "
                "init_seed=%llu seqlen=%lld steps=%lld target_batch=%lld lr=%g min_lr_ratio=%g warmup=%lld clip=%g "
                "weight_decay=%g",
                (long long)hp.n_embd, (long long)hp.n_ff, (long long)hp.n_layer, (long long)hp.n_head,
                (long long)hp.n_head_kv, (long long)hp.n_vocab, s.vocab_name.c_str(), (long long)hp.n_ctx_train,
                hp.rope_freq_base, (unsigned long long)f.cfg.seed, (long long)f.cfg.seqlen, (long long)f.cfg.steps,
                (long long)target_batch, f.cfg.lr, f.cfg.min_lr_ratio, (long long)f.cfg.warmup_steps(), f.cfg.clip,
                f.cfg.weight_decay);
  // How the peers average must agree too: a different wire dtype is refused by the
  // reducers, a different aggregator would give peers different parameters.
  return std::string(buf) + " aggregator=" + cf.aggregator + " clip_tau=" + std::to_string(cf.clip_tau) +
         " clip_iters=" + std::to_string(cf.clip_iters) + " wire=" + cf.wire +
         (cf.stages > 0 ? " stages=" + std::to_string(cf.stages) : std::string());
}

namespace {

const char* kSwarmColumns =
    "local_samples,group_samples,group,params_xxh3,matchmaking_s,allreduce_s,bytes_sent,bytes_received,parts_failed,dropped";

std::string swarm_columns(const CollabStepReport& r) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%lld,%lld,%d,%016" PRIx64 ",%.3f,%.3f,%llu,%llu,%d,%d", (long long)r.local_samples,
                (long long)r.group_samples, r.group_size, r.params_xxh3, r.matchmaking_s, r.allreduce_s, (unsigned long long)r.bytes_sent,
                (unsigned long long)r.bytes_received, r.parts_failed, r.dropped);
  return buf;
}

}  // namespace

int train_collaborative(TrainFlags& f, const CollabFlags& cf, TrainSetup& s) {
  CollabConfig cc = cf.config(f.cfg.batch, "");
  cc.config_text = run_config_text(f, s, cc.target_batch, cf);
  std::fprintf(stderr, "train: swarm run '%s', target batch %lld samples, micro-batch %lld, %s aggregation\n",
               cc.run.c_str(), (long long)cc.target_batch, (long long)f.cfg.batch, cf.aggregator.c_str());
  if (cc.byzantine != Byzantine::None)
    std::fprintf(stderr, "train: TEST HOOK --byzantine %s: this peer sends corrupted gradients\n", cf.byzantine.c_str());
  ThreadPool pool(f.threads);
  Trainer t(std::move(s.state), s.data, f.cfg, pool);
  TrainReporter rep(f, t, kSwarmColumns);
  const CollabTotals totals = collaborative_train(
      t, cc,
      [&](const CollabStepReport& r) {
        rep.report(r.step, t.state(), r.step.tokens ? swarm_columns(r) : "");
        if (r.step.tokens && cf.verbose)
          std::fprintf(stderr,
                       "swarm: step %lld: group %d, %lld own samples, matchmaking %.2fs, all-reduce %.2fs, "
                       "%.1f/%.1f MB sent/received, %d parts failed, %d contributions dropped, xxh3 %016" PRIx64 "\n",
                       (long long)r.step.step, r.group_size, (long long)r.local_samples, r.matchmaking_s,
                       r.allreduce_s, r.bytes_sent / 1e6, r.bytes_received / 1e6, r.parts_failed, r.dropped,
                       r.params_xxh3);
      },
      [&](int64_t step) {
        save_training_checkpoint(f, s, t.state());
        std::fprintf(stderr, "train: checkpoint at step %lld: %s\n", (long long)step, f.out.c_str());
      });
  std::fprintf(stderr, "train: samples computed %lld contributed %lld discarded %lld, %lld state downloads\n",
               (long long)totals.computed, (long long)totals.contributed, (long long)totals.discarded,
               (long long)totals.state_downloads);
  save_training_checkpoint(f, s, t.state());
  rep.finish(t.state());
  return 0;
}

}  // namespace engine
