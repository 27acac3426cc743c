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
  uint32_t rpc_timeout_ms = 8000;  // one avg.join call (covers the leader's window)
  int max_group = 64;              // the leader refuses joins beyond it ("group is full")
  // How many peers (us included) the caller expects at this epoch, e.g. from the
  // progress tracker: gathering ends as soon as that many have announced, instead of
  // after gather_ms (0: always wait gather_ms), and a leader keeps its group open
  // until that many have joined. A peer that was expected but never comes costs at
  // most gather_ms + join_window_ms.
  int expected_peers = 0;
  // The whole formation; 0: gather_ms + join_window_ms + 2 * rpc_timeout_ms. At
  // the deadline a follower averages alone, a leader closes with who joined.
  uint32_t deadline_ms = 0;
};

class Matchmaker {
 public:
  // Registers avg.join on rpc. Loop-thread object.
  Matchmaker(net::Rpc& rpc, net::DhtNode& dht);
  // Drops a formation in progress without calling its done; later avg.join calls
  // get code 4. Destroy it before the Rpc and DhtNode.
  ~Matchmaker();
  Matchmaker(const Matchmaker&) = delete;
  Matchmaker& operator=(const Matchmaker&) = delete;
  // Forms the group of `epoch` of `run` that includes `me` (me.id must be rpc's id;
  // me.addr the address others reach it at, "" or client_mode: it never leads).
  // done(spec) once, from the loop (never inside form_group); spec.members has at
  // least `me`. One formation at a time: a new call finishes the previous one alone.
  // Members' addresses are the ones the leader saw proven on their connections.
  void form_group(const std::string& run, int64_t epoch, const GroupMember& me, double weight,
                  const MatchmakingConfig& cfg, std::function<void(RoundSpec)> done);

 private:
  struct Pending;
  void read_candidates(const std::shared_ptr<Pending>& P);
  void try_next_leader(const std::shared_ptr<Pending>& P);
  void lead(const std::shared_ptr<Pending>& P);
  void watch_for_lower_leader(const std::shared_ptr<Pending>& P);
  bool group_complete(const Pending& P) const;
  void close_group(const std::shared_ptr<Pending>& P);
  void on_deadline(const std::shared_ptr<Pending>& P);
  void finish(const std::shared_ptr<Pending>& P, RoundSpec spec);
  void abandon(const std::shared_ptr<Pending>& P);
  void end(const std::shared_ptr<Pending>& P, const std::string& why);
  void on_join(net::Request& r);

  net::Rpc& rpc_;
  net::DhtNode& dht_;
  std::shared_ptr<Pending> leading_;  // this peer's current (or last) formation; it answers avg.join
};

}  // namespace engine::train
