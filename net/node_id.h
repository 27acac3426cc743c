// 160-bit identifiers for peers and keys, and the Kademlia XOR metric.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace engine::net {

struct NodeId {
  static constexpr size_t kBytes = 20;
  static constexpr int kBits = 160;
  std::array<uint8_t, kBytes> b{};

  static NodeId random();
  // Id of a DHT key: 160 bits of XXH3-128 over the key plus 32 bits of a seeded
  // XXH3-64. Not cryptographic; once peers sign records, ids of peers become
  // hashes of their public keys and this stays the key hash.
  static NodeId from_key(std::string_view key);
  // From exactly 20 raw bytes; false otherwise.
  static bool from_bytes(std::string_view raw, NodeId* out);
  // From 40 hex digits; false otherwise.
  static bool from_hex(std::string_view hex, NodeId* out);

  std::string_view bytes() const { return {(const char*)b.data(), kBytes}; }
  std::string hex() const;
  std::string short_hex() const { return hex().substr(0, 8); }
  bool is_zero() const;

  auto operator<=>(const NodeId&) const = default;
};

// XOR distance, itself a 160-bit big-endian number (comparable with <).
NodeId distance(const NodeId& a, const NodeId& b);
// True when a is strictly closer to target than b.
bool closer(const NodeId& target, const NodeId& a, const NodeId& b);
// Index of the highest differing bit: 159 for ids differing in the first bit,
// 0 for ids differing only in the last; -1 for equal ids. Bucket i of a
// routing table holds peers at distance [2^i, 2^(i+1)).
int bucket_index(const NodeId& self, const NodeId& other);
// A random id whose bucket_index relative to self is i (for bucket refresh).
NodeId random_id_in_bucket(const NodeId& self, int i);

struct NodeIdHash {
  size_t operator()(const NodeId& id) const {
    size_t h;
    __builtin_memcpy(&h, id.b.data(), sizeof h);  // ids are uniformly random
    return h;
  }
};

}  // namespace engine::net
