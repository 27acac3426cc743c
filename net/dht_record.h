// Signed DHT records. A subkey written as "@" + 40 hex digits names a peer
// (its owner); the value stored under it must carry the owner's Ed25519
// public key and a signature over the key id, subkey, value bytes and
// expiration (byte layout in docs/protocol.md §6). Because the signature
// travels with the value, every node that stores a copy (first store,
// replica, republish) and every reader that merges answers can check it
// without trusting whoever relayed it. Plain values and other subkeys carry
// no signature and are unauthenticated.
#pragma once
#include <optional>
#include <string>
#include <string_view>

#include "net/identity.h"
#include "net/node_id.h"

namespace engine::net {

// Expirations may lie at most this far ahead of a writer's clock, so a signed
// record can be replayed for at most a day (plus kClockSkewS at receivers,
// whose clocks may run behind the writer's).
constexpr double kMaxTtlS = 86400;
constexpr double kClockSkewS = 60;

// The owner named by an "@<40 hex>" subkey; nullopt for any other subkey.
std::optional<NodeId> subkey_owner(std::string_view subkey);

// The exact bytes an owner signs (docs/protocol.md §6).
std::string record_signing_message(const NodeId& key, std::string_view subkey, std::string_view value,
                                   double expiration);

// The 64-byte signature of a record by `me`.
std::string sign_record(const Identity& me, const NodeId& key, std::string_view subkey, std::string_view value,
                        double expiration);

enum class RecordCheck {
  kOk,
  kUnsigned,          // an owned subkey without a signature
  kSignedUnowned,     // a signature on a plain value or a non-owner subkey
  kMalformed,         // public key or signature of the wrong length
  kWrongSigner,       // the public key is not the one the subkey names
  kBadSignature,      // does not verify (modified value, expiration, key or subkey)
};
const char* record_check_name(RecordCheck c);

// Whether a value may be stored under (key, subkey): owned subkeys need a
// valid signature by their owner; anything else must be unsigned. pk and sig
// are empty for unsigned values.
RecordCheck check_record(const NodeId& key, const std::optional<std::string>& subkey, std::string_view value,
                         double expiration, std::string_view pk, std::string_view sig);

}  // namespace engine::net
