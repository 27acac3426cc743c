// Kademlia routing table: 160 k-buckets by XOR distance from our id, each
// ordered least-recently-seen first, with a replacement cache. A full bucket
// keeps its old entries while they answer pings (old peers tend to stay up),
// so a flood of new ids cannot push out the peers we know work.
#pragma once
#include <array>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "net/node_id.h"

namespace engine::net {

struct Contact {
  NodeId id;
  std::string addr;
  uint64_t last_seen_ms = 0;
};

class RoutingTable {
 public:
  static constexpr size_t kMaxReplacements = 8;

  explicit RoutingTable(const NodeId& self, size_t k = 20) : self_(self), k_(k) {}

  enum class Update {
    kAdded,       // new entry
    kRefreshed,   // known entry moved to the most-recently-seen end
    kBucketFull,  // kept as a replacement; *stale is the entry to ping
    kSelf,        // our own id: ignored
    kConflict,    // the id is known at another address: the live entry stays
  };
  // Records that a peer answered us or contacted us.
  Update seen(const Contact& c, uint64_t now_ms, Contact* stale = nullptr);
  // The peer failed: drop it, and promote the most recent replacement in its
  // bucket (returned in *promoted) if there is one.
  bool remove(const NodeId& id, Contact* promoted = nullptr);

  // Up to n contacts, closest to target first.
  std::vector<Contact> nearest(const NodeId& target, size_t n) const;
  const Contact* find(const NodeId& id) const;
  std::vector<Contact> all() const;
  size_t size() const;
  size_t k() const { return k_; }
  const NodeId& self() const { return self_; }

  // Last time a bucket gained or refreshed an entry or was looked up (refresh
  // runs lookups in buckets that went quiet).
  uint64_t touched_ms(int bucket) const { return buckets_[bucket].touched_ms; }
  void touch(int bucket, uint64_t now_ms) { buckets_[bucket].touched_ms = now_ms; }
  size_t bucket_size(int bucket) const { return buckets_[bucket].nodes.size(); }
  size_t replacements(int bucket) const { return buckets_[bucket].replacements.size(); }

 private:
  struct Bucket {
    std::deque<Contact> nodes;         // least recently seen first
    std::deque<Contact> replacements;  // most recent last
    uint64_t touched_ms = 0;
  };
  NodeId self_;
  size_t k_;
  std::array<Bucket, NodeId::kBits> buckets_;
};

}  // namespace engine::net
