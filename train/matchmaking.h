// Matchmaking (after hivemind's Matchmaking, simplified): when the collaboration's
// samples reach the target batch, the peers at that epoch agree on ONE group and
// its order, so the butterfly all-reduce cuts the vector the same way everywhere.
//
//   1. each peer puts "<run>.group.<epoch>" subkey "@<id>" -> {addr, bandwidth,
//      client, weight}, expiring after the round;
//   2. after gathering for `gather_ms` it reads the key; the leader is the
//      candidate with the lowest id that accepts connections;
//   3. followers call avg.join on the leader (the peer sends its GroupMember);
//      the leader accepts joins for that epoch until every candidate it knows of
//      has joined or join_window_ms passes, then answers every join with the
//      final group (sorted by id) and a round id;
//   4. a follower whose leader fails or refuses tries the next candidate as
//      leader; a peer that finds no group in time averages alone (a group of one).
// Every wait is bounded; a late joiner to a closed group is refused (error reply).
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "net/dht_node.h"
#include "net/rpc.h"
#include "train/butterfly.h"

namespace engine::train {

struct MatchmakingConfig {
  uint32_t gather_ms = 1500;       // wait after announcing before reading the key
  uint32_t join_window_ms = 4000;  // the leader's wait for joiners
  uint32_t rpc_timeout_ms = 8000;
  int max_group = 64;
};

class Matchmaker {
 public:
  // Registers avg.join on rpc. Loop-thread object.
  Matchmaker(net::Rpc& rpc, net::DhtNode& dht);
  ~Matchmaker();
  // Forms the group of `epoch` of `run` that includes `me` (me.id must be rpc's id).
  // done(spec) once, from the loop; spec.members has at least `me`.
  void form_group(const std::string& run, int64_t epoch, const GroupMember& me, double weight,
                  const MatchmakingConfig& cfg, std::function<void(RoundSpec)> done);

 private:
  struct Pending;
  net::Rpc& rpc_;
  net::DhtNode& dht_;
  std::shared_ptr<Pending> leading_;  // the group this peer is leading, if any
};

}  // namespace engine::train
