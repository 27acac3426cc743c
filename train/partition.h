// Which reducer aggregates which slice of the averaged vector (hivemind's
// load_balancing, simplified to "proportional to bandwidth").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "net/node_id.h"

namespace engine::train {

struct GroupMember {
  net::NodeId id;
  std::string addr;           // where its Rpc listens ("" for client-mode members)
  double bandwidth = 1.0;     // announced, any unit: only ratios matter
  bool client_mode = false;   // cannot accept connections: sends, reduces nothing
  double weight = 0;          // what it brings to the round, as matchmaking announced it (samples)
};

// Part boundaries: offsets[j]..offsets[j+1] for reducer j (members with client_mode
// false, in member order; offsets has reducers+1 entries), proportional to
// bandwidth (a bandwidth that is not a positive finite number counts as 0), every
// reducer >= 1 element when n >= reducers. Deterministic: every member computes
// the same cut (largest remainders, ties to the lower index).
std::vector<int64_t> partition(const std::vector<GroupMember>& members, int64_t n);

// Member index of each reducer, in reducer order.
std::vector<int> reducer_members(const std::vector<GroupMember>& members);

}  // namespace engine::train
