// A Kademlia DHT node on top of net/rpc (after hivemind's DHT):
//   RPCs      dht.ping, dht.store, dht.find, dht.peers (docs/protocol.md)
//   lookups   iterative, alpha queries in flight, ends when the k closest
//             live nodes seen have all answered
//   put       stores on the k nodes closest to the key (and here, if we are
//             among them); get merges the answers of every holder it meets
//             and caches what it found
//   upkeep    bucket refresh, republish of own values and of held replicas,
//             bans with exponential backoff for peers that do not answer
//   records   a subkey "@<id>" names its owner (subkey_owner, net/dht_record.h):
//             put signs it with this node's identity when <id> is ours and
//             refuses it otherwise; every store and every lookup answer is
//             checked, so forged or altered copies never enter storage or a
//             get result, whoever relays them
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "net/dht_routing.h"
#include "net/dht_storage.h"
#include "net/dht_wire.h"
#include "net/rpc.h"

namespace engine::net {

struct DhtOptions {
  size_t k = 20;
  int alpha = 3;
  uint32_t rpc_timeout_ms = 3000;
  uint32_t refresh_interval_ms = 60000;
  uint32_t republish_interval_ms = 300000;
  uint32_t ban_base_ms = 1000;   // first ban; doubles with each further failure
  uint32_t ban_max_ms = 300000;
  size_t max_store_batch = 64;   // items per dht.store
  Storage::Limits storage;
  std::function<void(const std::string&)> log;  // peers joining/leaving, republish rounds
};

struct LookupStats {
  int hops = 0;        // longest referral chain among nodes that answered
  int value_hops = 0;  // referral depth of the first node that returned the value
  int messages = 0;    // dht.find requests sent
  int failures = 0;    // of which unanswered
  double ms = 0;
};

struct GetResult {
  bool found = false;
  Record record;
  LookupStats stats;
};

class DhtNode {
 public:
  DhtNode(Rpc& rpc, DhtOptions opts = {});
  ~DhtNode();
  DhtNode(const DhtNode&) = delete;
  DhtNode& operator=(const DhtNode&) = delete;

  // Pings the initial peers, then looks up our own id to fill the table.
  // done(peers known, "" or why it failed).
  void bootstrap(const std::vector<std::string>& peers, std::function<void(size_t, const std::string&)> done);
  // Starts refresh/republish timers (servers and bootstrap nodes; not one-shot clients).
  void start_maintenance();
  void stop();

  // value_msgpack is one encoded msgpack object; expiration in DHT time, at
  // most kMaxTtlS ahead. done(number of nodes that accepted it, nodes tried);
  // (0, 0) at once for a subkey owned by another peer (we cannot sign it) or
  // an expiration out of range.
  void put(const std::string& key, const std::optional<std::string>& subkey, std::string value_msgpack,
           double expiration, std::function<void(int stored, int tried, const LookupStats&)> done);
  void get(const std::string& key, std::function<void(const GetResult&)> done);
  // The k closest live nodes to target.
  void find_nodes(const NodeId& target, std::function<void(const std::vector<Contact>&, const LookupStats&)> done);

  double now() const { return (double)rpc_.wall_ms() / 1000.0; }  // DHT time: Unix seconds
  const NodeId& id() const { return rpc_.id(); }
  RoutingTable& table() { return table_; }
  Storage& storage() { return storage_; }
  bool banned(const std::string& addr) const;
  void republish_now() { republish(); }
  // Items of dht.store and entries of lookup answers refused for a bad or
  // missing signature, an expiration out of range, or a malformed value.
  uint64_t rejected_records() const { return rejected_; }

  std::function<void(const Contact&)> on_peer_joined;
  std::function<void(const Contact&, const std::string& why)> on_peer_left;

 private:
  struct Lookup;
  struct OwnValue {
    std::string key;
    std::optional<std::string> subkey;
    std::string value;
    double expiration;
  };
  struct Ban {
    int failures = 0;
    uint64_t until_ms = 0;
  };

  void handle_find(Request& r);
  void handle_store(Request& r);
  void handle_peers(Request& r);

  void lookup(const NodeId& target, bool want_value, std::function<void(Lookup&)> done);
  void step(const std::shared_ptr<Lookup>& L);
  void query(const std::shared_ptr<Lookup>& L, const Contact& c);

  void saw(const PeerInfo& p);
  void failed(const Contact& c, const Reply& r);
  void send_store(const Contact& to, const std::vector<StoreItem>& items, bool replica,
                  std::function<void(int accepted)> done);
  bool entry_ok(const NodeId& key, const std::optional<std::string>& subkey, const ValueEntry& e);
  void drop_unacceptable(Record& r, double now);
  void tick();
  void refresh();
  void republish();

  Rpc& rpc_;
  DhtOptions opts_;
  RoutingTable table_;
  Storage storage_;  // values we hold as one of the k closest
  Storage cache_;    // values we found by lookups
  std::map<std::pair<std::string, std::string>, OwnValue> own_;
  std::unordered_map<std::string, Ban> bans_;  // by address
  std::set<NodeId> pinging_;
  uv_timer_t* timer_ = nullptr;
  uint64_t next_refresh_ = 0, next_republish_ = 0;
  bool stopped_ = false;
  uint64_t rejected_ = 0;
};

}  // namespace engine::net
