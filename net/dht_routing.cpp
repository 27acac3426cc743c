#include "net/dht_routing.h"

#include <algorithm>

namespace engine::net {

RoutingTable::Update RoutingTable::seen(const Contact& c, uint64_t now_ms, Contact* stale) {
  int bi = bucket_index(self_, c.id);
  if (bi < 0) return Update::kSelf;
  Bucket& b = buckets_[bi];
  for (auto it = b.nodes.begin(); it != b.nodes.end(); ++it) {
    if (it->id != c.id) continue;
    if (it->addr != c.addr) return Update::kConflict;
    Contact moved = *it;
    moved.last_seen_ms = now_ms;
    b.nodes.erase(it);
    b.nodes.push_back(moved);
    b.touched_ms = now_ms;
    return Update::kRefreshed;
  }
  Contact fresh = c;
  fresh.last_seen_ms = now_ms;
  if (b.nodes.size() < k_) {
    b.nodes.push_back(fresh);
    b.touched_ms = now_ms;
    return Update::kAdded;
  }
  auto r = std::find_if(b.replacements.begin(), b.replacements.end(), [&](const Contact& x) { return x.id == c.id; });
  if (r != b.replacements.end()) b.replacements.erase(r);
  b.replacements.push_back(fresh);
  if (b.replacements.size() > kMaxReplacements) b.replacements.pop_front();
  if (stale) *stale = b.nodes.front();
  return Update::kBucketFull;
}

bool RoutingTable::remove(const NodeId& id, Contact* promoted) {
  int bi = bucket_index(self_, id);
  if (bi < 0) return false;
  Bucket& b = buckets_[bi];
  auto r = std::find_if(b.replacements.begin(), b.replacements.end(), [&](const Contact& x) { return x.id == id; });
  if (r != b.replacements.end()) b.replacements.erase(r);
  auto it = std::find_if(b.nodes.begin(), b.nodes.end(), [&](const Contact& x) { return x.id == id; });
  if (it == b.nodes.end()) return false;
  b.nodes.erase(it);
  if (!b.replacements.empty()) {
    Contact c = b.replacements.back();
    b.replacements.pop_back();
    b.nodes.push_back(c);
    if (promoted) *promoted = c;
  }
  return true;
}

std::vector<Contact> RoutingTable::nearest(const NodeId& target, size_t n) const {
  std::vector<Contact> out = all();
  auto by_distance = [&](const Contact& a, const Contact& b) { return closer(target, a.id, b.id); };
  if (out.size() > n) {
    std::partial_sort(out.begin(), out.begin() + n, out.end(), by_distance);
    out.resize(n);
  } else {
    std::sort(out.begin(), out.end(), by_distance);
  }
  return out;
}

const Contact* RoutingTable::find(const NodeId& id) const {
  int bi = bucket_index(self_, id);
  if (bi < 0) return nullptr;
  for (auto& c : buckets_[bi].nodes)
    if (c.id == id) return &c;
  return nullptr;
}

std::vector<Contact> RoutingTable::all() const {
  std::vector<Contact> out;
  for (auto& b : buckets_) out.insert(out.end(), b.nodes.begin(), b.nodes.end());
  return out;
}

size_t RoutingTable::size() const {
  size_t n = 0;
  for (auto& b : buckets_) n += b.nodes.size();
  return n;
}

}  // namespace engine::net
