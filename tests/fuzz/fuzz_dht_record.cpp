// libFuzzer target for signed DHT records (net/dht_wire.*, net/dht_record.*):
//   first byte even: the rest is a dht.find record or a dht.store item
//     (msgpack). Decoding must refuse cleanly (BadMessage); what decodes is
//     signature-checked and merged like a reader does, and must survive a
//     re-encode unchanged: a relaying node re-encodes values, so a value whose
//     encoding changed on the second pass could never verify again.
//   first byte odd: the rest is a record (key, subkey, value, expiration)
//     signed by a fixed key; it must verify, and flipping any one bit of the
//     signed fields, the public key or the signature must make it fail.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "net/dht_record.h"
#include "net/dht_wire.h"

using namespace engine::net;

static void must(bool ok) {
  if (!ok) __builtin_trap();
}

// Field by field, expirations bit for bit (NaN != NaN, yet it must survive).
static bool same(const ValueEntry& a, const ValueEntry& b) {
  return a.value == b.value && a.pk == b.pk && a.sig == b.sig &&
         std::memcmp(&a.expiration, &b.expiration, sizeof(double)) == 0;
}

static void decode(const char* p, size_t n) {
  static const NodeId key = NodeId::from_key("fuzz");
  try {
    msgpack::object_handle oh = unpack_untrusted(p, n);
    try {
      Record r = unpack_record(oh.get(), 1024);
      Record merged;
      merge_record(merged, r, [](const std::optional<std::string>& sub, const ValueEntry& e) {
        return check_record(key, sub, e.value, e.expiration, e.pk, e.sig) == RecordCheck::kOk;
      });
      Buf b;
      Packer pk(b);
      pack_record(pk, b, r);
      auto oh2 = unpack_untrusted(b.s.data(), b.s.size());
      Record back = unpack_record(oh2.get(), 1024);
      must(back.is_dict == r.is_dict && back.dict.size() == r.dict.size());
      for (auto& [sub, e] : r.dict) must(back.dict.count(sub) && same(back.dict.at(sub), e));
      if (!r.is_dict) must(same(back.plain, r.plain));
    } catch (const BadMessage&) {
    }
    try {
      StoreItem it = unpack_store_item(oh.get());
      (void)check_record(it.key, it.subkey, it.entry.value, it.entry.expiration, it.entry.pk, it.entry.sig);
      Buf b;
      Packer pk(b);
      pack_store_item(pk, b, it);
      auto oh2 = unpack_untrusted(b.s.data(), b.s.size());
      StoreItem back = unpack_store_item(oh2.get());
      must(same(back.entry, it.entry) && back.subkey == it.subkey && back.key == it.key && back.origin == it.origin);
    } catch (const BadMessage&) {
    }
  } catch (const BadMessage&) {
  }
}

static void tamper(const uint8_t* d, size_t n) {
  static const Identity me = Identity::generate();
  static const std::string pk((const char*)me.public_key().data(), kPublicKeyBytes);
  if (n < 12) return;
  // [flip position: 2 bytes][key seed: 1][expiration: 8][value...]
  size_t flip = (size_t)d[0] << 8 | d[1];
  NodeId key = NodeId::from_key(std::string_view((const char*)d + 2, 1));
  double exp;
  std::memcpy(&exp, d + 3, 8);
  std::string value((const char*)d + 11, n - 11);
  std::string sub = "@" + me.id().hex();
  std::string sig = sign_record(me, key, sub, value, exp);
  must(check_record(key, sub, value, exp, pk, sig) == RecordCheck::kOk);
  // One bit flipped in exactly one field: key, expiration, value, pk or signature.
  std::string p = pk, s = sig;
  size_t bit = flip % 8, at = flip / 8;
  uint64_t bits;
  std::memcpy(&bits, &exp, 8);
  if (at < NodeId::kBytes) {
    key.b[at] ^= (uint8_t)(1u << bit);
  } else if ((at -= NodeId::kBytes) < 8) {
    bits ^= 1ull << (at * 8 + bit);
  } else if ((at -= 8) < kPublicKeyBytes) {
    p[at] ^= (char)(1u << bit);
  } else if ((at -= kPublicKeyBytes) < kSignatureBytes) {
    s[at] ^= (char)(1u << bit);
  } else {
    at -= kSignatureBytes;
    if (value.empty()) return;
    value[at % value.size()] ^= (char)(1u << bit);
  }
  std::memcpy(&exp, &bits, 8);
  must(check_record(key, sub, value, exp, p, s) != RecordCheck::kOk);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if (data[0] & 1) tamper(data + 1, size - 1);
  else decode((const char*)data + 1, size - 1);
  return 0;
}
