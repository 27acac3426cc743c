// Who a peer is: an Ed25519 key pair (libsodium). The peer id, the 160-bit
// Kademlia id every other part of the swarm uses, is derived from the public
// key, so an id cannot be claimed without the secret key behind it.
//
// Key file (--identity PATH): 4 bytes "EID1" then libsodium's 64-byte secret
// key (seed + public key); created 0600 on first use, written to a temp file
// and renamed so a crash never leaves half a key.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "net/node_id.h"

namespace engine::net {

constexpr size_t kPublicKeyBytes = 32;
constexpr size_t kSignatureBytes = 64;
using PublicKey = std::array<uint8_t, kPublicKeyBytes>;

// The peer id of a public key: the first 20 bytes of BLAKE2b-256 over a domain
// tag and the key.
NodeId peer_id_of(const PublicKey& pk);

// Detached Ed25519 signature check; false for any malformed input.
bool verify_signature(const PublicKey& pk, std::string_view message, std::string_view signature);

class Identity {
 public:
  // A fresh random key pair (clients and tests that need no stable id).
  static Identity generate();
  // Reads the key file; when it does not exist, creates it (mode 0600). Throws
  // Error on a malformed file or one readable by others.
  static Identity load_or_create(const std::string& path);

  const PublicKey& public_key() const { return pk_; }
  const NodeId& id() const { return id_; }
  // 64-byte detached Ed25519 signature of message.
  std::string sign(std::string_view message) const;

 private:
  Identity() = default;
  PublicKey pk_{};
  std::array<uint8_t, 64> sk_{};
  NodeId id_;
};

// Makes sure libsodium is initialised (idempotent, thread-safe); throws on failure.
void crypto_init();

}  // namespace engine::net
