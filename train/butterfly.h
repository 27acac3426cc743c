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

#include "core/dtype.h"
#include "net/rpc.h"
#include "train/centered_clip.h"

namespace engine::train {

// Gradients on the wire: F32, F16, or Q8_0 (8-bit blockwise, 32 values per f16 scale).
enum class WireDType { F32, F16, Q8 };
bool wire_dtype_from_name(const std::string& s, WireDType* out);  // "f32", "f16", "int8"
// Encodes/decodes n floats (decode checks the byte count: Error on mismatch).
std::string wire_encode(WireDType t, const float* x, int64_t n);
void wire_decode(WireDType t, std::string_view bytes, float* out, int64_t n);

struct GroupMember {
  net::NodeId id;
  std::string addr;           // where its Rpc listens ("" for client-mode members)
  double bandwidth = 1.0;     // announced, any unit: only ratios matter
  bool client_mode = false;   // cannot accept connections: sends, reduces nothing
};

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
};

struct AllReduceResult {
  std::vector<float> averaged;         // the group's aggregate (own values where a part failed)
  int parts_total = 0, parts_failed = 0;  // failed: left at local values
  std::vector<net::NodeId> dropped;    // senders excluded by the parts this member reduced
  uint64_t bytes_sent = 0, bytes_received = 0;  // payload bytes, this member
  double seconds = 0;
};

// Part boundaries: offsets[j]..offsets[j+1] for reducer j (members with client_mode
// false, in member order), proportional to bandwidth, every reducer >= 1 element
// when n >= reducers. Deterministic: every member computes the same cut.
std::vector<int64_t> partition(const std::vector<GroupMember>& members, int64_t n);

class ButterflyAllReduce {
 public:
  // Registers avg.part and avg.result on rpc (which must outlive this object).
  explicit ButterflyAllReduce(net::Rpc& rpc);
  ~ButterflyAllReduce();

  // Starts a round on the loop of rpc: `local` is this member's vector, `weight` its
  // weight (e.g. samples accumulated). done() runs once, from the loop, by the deadline.
  // A test hook: `corrupt` (may be null) rewrites what is SENT (not the local copy).
  void all_reduce(const RoundSpec& spec, std::vector<float> local, double weight, const AllReduceConfig& cfg,
                  std::function<void(AllReduceResult)> done,
                  std::function<void(std::vector<float>&)> corrupt = nullptr);

  // Bounds a hostile peer: rounds held at once, bytes buffered per round.
  struct Limits {
    int max_rounds = 8;
    uint64_t max_round_bytes = 1ull << 32;
  };
  Limits limits;

 private:
  struct Round;
  net::Rpc& rpc_;
  std::map<std::string, std::shared_ptr<Round>> rounds_;
};

}  // namespace engine::train
