// Collaborative data-parallel training (DeDLOC, Diskin et al. 2021): every peer of
// a run holds the whole model and trains on its own data; when the samples the
// peers accumulated together reach the target batch, the peers at that epoch form
// a group, all-reduce their mean gradients weighted by the tokens behind each
// (Byzantine-robust with CenteredClip), and all take the same optimizer step, so
// their parameters stay bit-identical.
//
// One step of one peer, as the code reads:
//   accumulate   micro-batches into a gradient sum, publishing progress every
//                progress_period_s, until the run's samples at this epoch reach
//                target_batch (or the run moved on without us: catch up instead)
//   match        form the epoch's group (train/matchmaking.h)
//   all-reduce   butterfly over the group (train/butterfly.h)
//   step         Trainer::apply_step on the aggregate; epoch + 1
//   verify       publish the parameters' xxh3; if the majority of the epoch's
//                peers reports another one, download state from one of them
// A peer that starts late or is behind the global epoch downloads parameters,
// optimizer state and epoch from a peer of the run (train/state_transfer.h).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "train/butterfly.h"
#include "train/matchmaking.h"
#include "train/pretrain.h"

namespace engine::train {

// Test hook (--byzantine): what a dishonest peer sends instead of its gradient.
// EpochLie: honest gradients, but progress records that claim an epoch 1000 ahead
// with a checksum no one else has (trying to make the others chase it).
enum class Byzantine { None, SignFlip, Scale, Random, Delayed, EpochLie };
// "none", "sign-flip", "scale", "random", "delayed", "epoch-lie"
bool byzantine_from_name(const std::string& s, Byzantine* out);

class NetThread;

// Where a peer's gradients come from when it does not compute them from its own
// data: a SWARM stage peer's come from the backward calls it serves, a trainer's
// from the micro-batches it pushes through the stages (train/pipeline.h).
class GradientSource {
 public:
  virtual ~GradientSource() = default;
  struct Got {
    int64_t samples = 0, tokens = 0;
    double loss_sum = 0;
  };
  // From now on contributions of `epoch` are added into grad (zeroed by the caller,
  // laid out like the trainer's parameters) until close().
  virtual void open(int64_t epoch, float* grad) = 0;
  // Waits until something was added or wait_s passed; returns what was added since
  // the last call.
  virtual Got collect(double wait_s) = 0;
  // Nothing is added to grad once this returns; returns what came since the last collect.
  virtual Got close() = 0;
  // True when the epoch must end whatever the count (a stage peer follows the
  // trainers' epoch instead of counting towards the target itself).
  virtual bool epoch_over(int64_t epoch) { (void)epoch; return false; }
  // False when the epoch ends only by epoch_over (not by the run's samples reaching
  // the target batch).
  virtual bool counts_toward_target() const { return true; }
  // After each look at the run's progress: this peer's share of the samples still
  // missing to the target (a source may stop starting work it would waste).
  virtual void hint_remaining(int64_t samples) { (void)samples; }
};

struct CollabConfig {
  std::string run = "run";
  std::vector<std::string> initial_peers;  // empty: this peer starts the run's DHT
  std::string listen = "127.0.0.1:0";
  std::string announce;                    // the address peers should dial (a proxy, a NAT); "" = listen
  std::shared_ptr<const net::Identity> identity;  // --identity; null = a fresh key pair
  std::shared_ptr<const net::SwarmKey> swarm_key;  // --swarm-key; null = an open swarm
  bool client_mode = false;                // no listener: sends and receives, reduces nothing
  int64_t target_batch = 64;               // samples (windows) per collaboration step
  double bandwidth = 1.0;                  // announced: this peer's share of the reduction
  double progress_period_s = 0.5;          // publish/fetch progress at most this often
  double progress_ttl_s = 10;              // a vanished peer's progress expires after this
  double join_timeout_s = 60;              // waiting for the DHT and a state download
  AllReduceConfig allreduce;
  MatchmakingConfig matchmaking;
  Byzantine byzantine = Byzantine::None;
  int64_t byzantine_delay = 8;             // steps behind, for Byzantine::Delayed
  // Test hook (--test-die): SIGKILL this process at epoch die_at_epoch, a few
  // milliseconds into its all-reduce (die_in_round) or after its first micro-batch.
  int64_t die_at_epoch = -1;
  bool die_in_round = false;
  std::string config_text;                 // the run's model/optimizer config; joiners must match
  uint64_t data_seed = 0;                  // this peer's data order; 0: derived from its id
  std::function<void(const std::string&)> log;  // one line per event (joins, groups, repairs)
  // SWARM roles (train/pipeline.h): an existing network to use instead of starting
  // one (then listen/initial_peers/announce are not used), the gradients' source, an
  // evaluation other than Trainer::evaluate (NaN: none), and a way to stop early
  // (a stage peer that moves to another stage); the state is left as it is.
  NetThread* net = nullptr;
  GradientSource* source = nullptr;
  std::function<double()> evaluate;
  std::function<bool()> should_stop;
  // The run this group belongs to ("<run>" for "<run>.s1"): its config is checked and
  // kept alive in the DHT too, so every role of a SWARM run agrees on one config.
  std::string parent_run;
  // What this peer announces as its samples/s (a stage peer: its serving capacity).
  std::function<double()> announced_rate;
};

// What one collaboration step did, for the progress line and the CSV log.
struct CollabStepReport {
  StepReport step;                         // loss: this peer's mean over its micro-batches
  int64_t local_samples = 0;               // windows this peer contributed to the step
  int64_t group_samples = 0;               // windows the whole group contributed (as matchmaking announced)
  int group_size = 1;
  int parts_failed = 0;
  int dropped = 0;                         // contributions excluded by our reductions
  uint64_t bytes_sent = 0, bytes_received = 0;
  double allreduce_s = 0, matchmaking_s = 0;
  uint64_t params_xxh3 = 0;
  bool repaired = false;                   // state downloaded after a checksum mismatch
};

// This peer's sample accounting: every window it computed a gradient on was either
// contributed to exactly one step or discarded (its epoch was over), never both.
struct CollabTotals {
  int64_t computed = 0, contributed = 0, discarded = 0;
  int64_t state_downloads = 0;
};

// Trains `t` (its state, config and data) together with the peers of cc.run until
// t.config().steps collaboration steps are done. on_step after every step;
// checkpoint(step) as pretrain() does. Throws Error when the run's config differs
// from cc.config_text or the DHT cannot be joined.
// Checks the config published under "<run>.config" equals config_text (Error naming
// both otherwise, or when the DHT does not answer within timeout_s) and publishes
// ours (expiring after ttl_s). The first peer of a run starts it this way.
void join_run_config(NetThread& net, const std::string& run, const std::string& config_text, double ttl_s,
                     double timeout_s, const std::function<void(const std::string&)>& log);

CollabTotals collaborative_train(Trainer& t, const CollabConfig& cc,
                         const std::function<void(const CollabStepReport&)>& on_step,
                         const std::function<void(int64_t step)>& checkpoint);

}  // namespace engine::train
