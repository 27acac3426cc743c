// Butterfly all-reduce over net::Rpc (hivemind's AllReduceRunner, BTARD's
// ButterflyClip): a group of peers holding vectors of the same length each get
// the group's aggregate.
//
// The vector is cut into one contiguous part per REDUCER (members not in client
// mode), sized in proportion to the bandwidth each announced. Every member sends
// part j of its (weighted) vector to reducer j in chunks of at most chunk_bytes
// (avg.part calls, no whole-vector frames); reducer j aggregates the n
// contributions to its part (mean or CenteredClip, with the senders' weights) and
// answers every member's avg.result calls for that part with the result, chunk by
// chunk. Failures, bounded by the round's deadline:
//   - a sender silent or late: dropped from that part (its contribution excluded);
//   - a reducer that fails or does not answer: that part stays at the member's own
//     local values this round (parameters then differ; the checksum check repairs);
//   - nothing waits past deadline_ms; a round id keeps rounds apart, and the state
//     of a finished round is freed.
// net/ knows nothing of this: it only carries avg.part / avg.result (docs/protocol.md).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "net/rpc.h"
#include "train/centered_clip.h"
#include "train/partition.h"   // GroupMember, partition()
#include "train/wire_dtype.h"  // WireDType, wire_encode/decode and their errors

namespace engine::train {

struct RoundSpec {
  std::string round_id;                // the same on every member (e.g. "<run>.<epoch>.<group>")
  std::vector<GroupMember> members;    // the same order on every member
  int my_index = -1;
};

struct AllReduceConfig {
  Aggregator aggregator = Aggregator::CenteredClip;
  ClipConfig clip;
  WireDType wire = WireDType::F32;
  uint32_t deadline_ms = 30000;        // whole round, from all_reduce()
  size_t chunk_bytes = 1u << 20;       // wire bytes per avg.part / avg.result message
  // Every member must use the same aggregator, wire, chunk_bytes and deadline_ms.
};

struct AllReduceResult {
  std::vector<float> averaged;         // the group's aggregate (own values where a part failed)
  int parts_total = 0, parts_failed = 0;  // failed: left at local values
  std::vector<net::NodeId> dropped;    // senders excluded by the part this member reduced
                                       // (silent, late, or rejected for a bad message)
  uint64_t bytes_sent = 0, bytes_received = 0;  // payload (data) bytes, this member, until done()
  double seconds = 0;
};

class ButterflyAllReduce {
 public:
  // Registers avg.part and avg.result on rpc (which must outlive this object).
  explicit ButterflyAllReduce(net::Rpc& rpc);
  // Unfinished rounds are dropped without calling their done(); requests waiting
  // on them get an error.
  ~ButterflyAllReduce();
  ButterflyAllReduce(const ButterflyAllReduce&) = delete;
  ButterflyAllReduce& operator=(const ButterflyAllReduce&) = delete;

  // Starts a round on the loop of rpc: `local` is this member's vector, `weight` its
  // weight (e.g. samples accumulated; > 0). done() runs once, from the loop (never
  // inside all_reduce), by the deadline. spec.members[my_index].id must be rpc's id
  // (reducers know senders by the id of their connection). Throws Error on a spec
  // or config that cannot work (bad index, duplicate ids, a reducer without an
  // address, chunk_bytes outside [64, frame limit - 4 KiB], a round id in use).
  // A test hook: `corrupt` (may be null) rewrites what is SENT (not the local copy).
  //
  // Every contribution, this member's own included, goes through the wire dtype
  // once, and so does every part's result, so all members get identical values.
  // CenteredClip runs per part (norms over the part, as in BTARD's ButterflyClip).
  // The reducer aggregates as soon as every member's part is complete, or at 70%
  // of the deadline with those complete by then.
  void all_reduce(const RoundSpec& spec, std::vector<float> local, double weight, const AllReduceConfig& cfg,
                  std::function<void(AllReduceResult)> done,
                  std::function<void(std::vector<float>&)> corrupt = nullptr);

  // Bounds a hostile peer: rounds held at once (started here or only announced
  // by early messages), bytes buffered for a round that has not started here.
  struct Limits {
    int max_rounds = 8;
    uint64_t max_round_bytes = 1ull << 32;
  };
  Limits limits;

  size_t rounds_held() const { return rounds_.size(); }  // tests: state is freed

 private:
  struct Round;
  void on_part(net::Request& r);
  void on_result(net::Request& r);
  // The round `id`, creating a not-yet-started one for early messages when the
  // limits allow; null (and *why set) when the message must be refused.
  std::shared_ptr<Round> round_for_message(std::string_view id, std::string* why);
  void forget(const std::string& id);  // frees a round, remembers that it is over
  bool is_over(const std::string& id) const;
  // A connection to a peer closed: it will send nothing more and reduce nothing, so
  // the rounds it is in stop waiting for it (instead of until their deadlines).
  void peer_gone(const net::NodeId& id);

  net::Rpc& rpc_;
  std::function<void(const net::PeerInfo&, const std::string&)> prev_on_closed_;
  std::map<std::string, std::shared_ptr<Round>> rounds_;
  std::vector<std::string> over_;  // recently freed round ids (a small ring), for clear errors
  size_t over_next_ = 0;
};

}  // namespace engine::train
