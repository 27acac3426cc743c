#include "net/node_id.h"

#include <xxhash.h>

#include <cstring>
#include <random>

#include <unistd.h>

namespace engine::net {

static std::mt19937_64& rng() {
  // Reseeded after fork(): children must not share their parent's ids.
  static thread_local std::mt19937_64 g;
  static thread_local pid_t seeded_for = 0;
  if (seeded_for != getpid()) {
    std::random_device rd;
    g.seed((uint64_t)rd() << 32 ^ rd());
    seeded_for = getpid();
  }
  return g;
}

NodeId NodeId::random() {
  NodeId id;
  uint64_t v = 0;
  for (size_t i = 0; i < kBytes; i++, v >>= 8) {
    if (i % 8 == 0) v = rng()();
    id.b[i] = (uint8_t)v;
  }
  return id;
}

NodeId NodeId::from_key(std::string_view key) {
  NodeId id;
  XXH128_hash_t h = XXH3_128bits(key.data(), key.size());
  uint64_t lo = XXH3_64bits_withSeed(key.data(), key.size(), 0x9E3779B97F4A7C15ull);
  for (int i = 0; i < 8; i++) id.b[i] = (uint8_t)(h.high64 >> (56 - 8 * i));
  for (int i = 0; i < 8; i++) id.b[8 + i] = (uint8_t)(h.low64 >> (56 - 8 * i));
  for (int i = 0; i < 4; i++) id.b[16 + i] = (uint8_t)(lo >> (56 - 8 * i));
  return id;
}

bool NodeId::from_bytes(std::string_view raw, NodeId* out) {
  if (raw.size() != kBytes) return false;
  std::memcpy(out->b.data(), raw.data(), kBytes);
  return true;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool NodeId::from_hex(std::string_view hex, NodeId* out) {
  if (hex.size() != 2 * kBytes) return false;
  for (size_t i = 0; i < kBytes; i++) {
    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->b[i] = (uint8_t)(hi << 4 | lo);
  }
  return true;
}

std::string NodeId::hex() const {
  static const char* d = "0123456789abcdef";
  std::string s(2 * kBytes, '0');
  for (size_t i = 0; i < kBytes; i++) s[2 * i] = d[b[i] >> 4], s[2 * i + 1] = d[b[i] & 15];
  return s;
}

bool NodeId::is_zero() const {
  for (uint8_t x : b)
    if (x) return false;
  return true;
}

NodeId distance(const NodeId& a, const NodeId& b) {
  NodeId d;
  for (size_t i = 0; i < NodeId::kBytes; i++) d.b[i] = a.b[i] ^ b.b[i];
  return d;
}

bool closer(const NodeId& target, const NodeId& a, const NodeId& b) {
  for (size_t i = 0; i < NodeId::kBytes; i++) {
    uint8_t da = a.b[i] ^ target.b[i], db = b.b[i] ^ target.b[i];
    if (da != db) return da < db;
  }
  return false;
}

int bucket_index(const NodeId& self, const NodeId& other) {
  for (size_t i = 0; i < NodeId::kBytes; i++) {
    uint8_t x = self.b[i] ^ other.b[i];
    if (x) return (int)(NodeId::kBytes - 1 - i) * 8 + (31 - __builtin_clz((unsigned)x));
  }
  return -1;
}

NodeId random_id_in_bucket(const NodeId& self, int i) {
  // Keep self's bits above i, flip bit i, randomize the bits below it.
  NodeId r = NodeId::random(), out = self;
  int byte = (int)NodeId::kBytes - 1 - i / 8, bit = i % 8;
  out.b[byte] ^= (uint8_t)(1u << bit);
  uint8_t low_mask = (uint8_t)((1u << bit) - 1);
  out.b[byte] = (uint8_t)((out.b[byte] & ~low_mask) | (r.b[byte] & low_mask));
  for (size_t j = byte + 1; j < NodeId::kBytes; j++) out.b[j] = r.b[j];
  return out;
}

}  // namespace engine::net
