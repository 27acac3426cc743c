#include "net/dht_record.h"

#include <cstdint>
#include <cstring>

namespace engine::net {

namespace {
// Domain separation: these bytes never start a message signed for any other
// purpose, so a record signature cannot be reused elsewhere or vice versa.
constexpr char kRecordTag[] = "engine dht record v1";  // + its terminating NUL

void put_be(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; i--) out.push_back((char)(uint8_t)(v >> (8 * i)));
}
}  // namespace

std::optional<NodeId> subkey_owner(std::string_view subkey) {
  NodeId id;
  if (subkey.size() == 41 && subkey[0] == '@' && NodeId::from_hex(subkey.substr(1), &id)) return id;
  return std::nullopt;
}

std::string record_signing_message(const NodeId& key, std::string_view subkey, std::string_view value,
                                   double expiration) {
  std::string m;
  m.reserve(sizeof kRecordTag + NodeId::kBytes + 2 + subkey.size() + 4 + value.size() + 8);
  m.append(kRecordTag, sizeof kRecordTag);  // includes the NUL
  m.append(key.bytes());
  // Lengths make the encoding unambiguous (no subkey/value boundary shifts).
  put_be(m, subkey.size() & 0xffff, 2);
  m.append(subkey.substr(0, 0xffff));
  put_be(m, value.size() & 0xffffffffu, 4);
  m.append(value);
  uint64_t bits;
  static_assert(sizeof bits == sizeof expiration);
  std::memcpy(&bits, &expiration, sizeof bits);
  put_be(m, bits, 8);
  return m;
}

std::string sign_record(const Identity& me, const NodeId& key, std::string_view subkey, std::string_view value,
                        double expiration) {
  return me.sign(record_signing_message(key, subkey, value, expiration));
}

const char* record_check_name(RecordCheck c) {
  switch (c) {
    case RecordCheck::kOk: return "ok";
    case RecordCheck::kUnsigned: return "owned subkey without a signature";
    case RecordCheck::kSignedUnowned: return "signature on a value that has no owner";
    case RecordCheck::kMalformed: return "malformed public key or signature";
    case RecordCheck::kWrongSigner: return "signed by a key other than the subkey's owner";
    case RecordCheck::kBadSignature: return "signature does not verify";
  }
  return "?";
}

RecordCheck check_record(const NodeId& key, const std::optional<std::string>& subkey, std::string_view value,
                         double expiration, std::string_view pk, std::string_view sig) {
  std::optional<NodeId> owner = subkey ? subkey_owner(*subkey) : std::nullopt;
  if (!owner) return pk.empty() && sig.empty() ? RecordCheck::kOk : RecordCheck::kSignedUnowned;
  if (pk.empty() && sig.empty()) return RecordCheck::kUnsigned;
  if (pk.size() != kPublicKeyBytes || sig.size() != kSignatureBytes) return RecordCheck::kMalformed;
  PublicKey k;
  std::memcpy(k.data(), pk.data(), k.size());
  // The cheap hash first: a record claiming someone else's subkey costs no
  // signature check.
  if (peer_id_of(k) != *owner) return RecordCheck::kWrongSigner;
  if (!verify_signature(k, record_signing_message(key, *subkey, value, expiration), sig))
    return RecordCheck::kBadSignature;
  return RecordCheck::kOk;
}

}  // namespace engine::net
