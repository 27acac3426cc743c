// Signed DHT records (net/dht_record.h) and the store rules that protect
// owned entries (net/dht_storage.h), without a network.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "net/dht_record.h"
#include "net/dht_storage.h"
#include "net/dht_wire.h"

using namespace engine::net;

namespace {

std::string owned(const Identity& who) {
  std::string s = who.id().hex();
  s.insert(0, 1, '@');
  return s;
}
std::string pk_of(const Identity& who) { return {(const char*)who.public_key().data(), kPublicKeyBytes}; }

// A value signed by `signer` under `subkey`.
ValueEntry signed_entry(const Identity& signer, const NodeId& key, const std::string& subkey, const std::string& v,
                        double exp) {
  return ValueEntry(v, exp, pk_of(signer), sign_record(signer, key, subkey, v, exp));
}

RecordCheck check(const NodeId& key, const std::optional<std::string>& sub, const ValueEntry& e) {
  return check_record(key, sub, e.value, e.expiration, e.pk, e.sig);
}

}  // namespace

TEST(DhtRecord, OwnerSignatureVerifiesAndEveryForgeryIsNamed) {
  Identity a = Identity::generate(), b = Identity::generate();
  NodeId key = NodeId::from_key("model.3");
  std::string sa = owned(a);
  ValueEntry good = signed_entry(a, key, sa, "\xa2hi", 500);
  EXPECT_EQ(check(key, sa, good), RecordCheck::kOk);

  ValueEntry e = good;
  e.value = "\xa2ho";  // modified value
  EXPECT_EQ(check(key, sa, e), RecordCheck::kBadSignature);
  e = good;
  e.expiration = 900;  // extended lifetime
  EXPECT_EQ(check(key, sa, e), RecordCheck::kBadSignature);
  EXPECT_EQ(check(NodeId::from_key("model.4"), sa, good), RecordCheck::kBadSignature);  // moved to another key
  EXPECT_EQ(check(key, owned(b), good), RecordCheck::kWrongSigner);  // moved to another owner's subkey
  // B signs a record for "@A" with its own key, or claims A's key with its signature.
  EXPECT_EQ(check(key, sa, signed_entry(b, key, sa, "\xa2hi", 500)), RecordCheck::kWrongSigner);
  e = signed_entry(b, key, sa, "\xa2hi", 500);
  e.pk = pk_of(a);
  EXPECT_EQ(check(key, sa, e), RecordCheck::kBadSignature);
  EXPECT_EQ(check(key, sa, ValueEntry("\xa2hi", 500)), RecordCheck::kUnsigned);
  e = good;
  e.sig.pop_back();
  EXPECT_EQ(check(key, sa, e), RecordCheck::kMalformed);
  // Plain values and name subkeys carry no signature, and must not pretend to.
  EXPECT_EQ(check(key, std::nullopt, ValueEntry("\xa2hi", 500)), RecordCheck::kOk);
  EXPECT_EQ(check(key, std::string("name"), ValueEntry("\xa2hi", 500)), RecordCheck::kOk);
  EXPECT_EQ(check(key, std::string("name"), good), RecordCheck::kSignedUnowned);
  EXPECT_EQ(check(key, std::nullopt, good), RecordCheck::kSignedUnowned);
}

TEST(DhtRecord, SigningMessageSeparatesFields) {
  NodeId key = NodeId::from_key("k");
  // Moving bytes between subkey and value must change the message.
  EXPECT_NE(record_signing_message(key, "ab", "c", 1), record_signing_message(key, "a", "bc", 1));
  EXPECT_NE(record_signing_message(key, "a", "b", 1), record_signing_message(key, "a", "b", 1.0000001));
  std::string m = record_signing_message(key, "s", "v", 2.0);
  ASSERT_EQ(m.size(), 21u + 20 + 2 + 1 + 4 + 1 + 8);
  EXPECT_EQ(m.substr(0, 21), std::string("engine dht record v1\0", 21));
  EXPECT_EQ(m.substr(m.size() - 8), std::string("\x40\x00\x00\x00\x00\x00\x00\x00", 8));  // 2.0, big-endian
}

TEST(DhtRecord, WireKeepsSignatures) {
  Identity a = Identity::generate();
  NodeId key = NodeId::from_key("k");
  Record r;
  r.is_dict = true;
  r.dict[owned(a)] = signed_entry(a, key, owned(a), "\x01", 300);
  r.dict["name"] = ValueEntry("\x02", 200);
  Buf b;
  Packer pk(b);
  pack_record(pk, b, r);
  auto oh = unpack_untrusted(b.s.data(), b.s.size());
  Record back = unpack_record(oh.get(), 16);
  EXPECT_EQ(back.dict, r.dict);

  StoreItem it{key, owned(a), r.dict[owned(a)], a.id()};
  Buf b2;
  Packer pk2(b2);
  pack_store_item(pk2, b2, it);
  auto oh2 = unpack_untrusted(b2.s.data(), b2.s.size());
  StoreItem it2 = unpack_store_item(oh2.get());
  EXPECT_EQ(it2.entry, it.entry);
  EXPECT_EQ(it2.subkey, it.subkey);
  EXPECT_EQ(check(key, it2.subkey, it2.entry), RecordCheck::kOk);
}

TEST(Storage, OwnedEntriesOutrankPlainValues) {
  Identity a = Identity::generate();
  NodeId k = NodeId::from_key("block");
  Storage s;
  EXPECT_EQ(s.store(k, owned(a), signed_entry(a, k, owned(a), "\x01", 200), 100), Storage::Result::kStored);
  // A plain write, however late its expiration, cannot wipe an owned entry.
  EXPECT_EQ(s.store(k, std::nullopt, "\x02", 10000, 100), Storage::Result::kOlder);
  EXPECT_TRUE(s.get(k, 100)->dict.count(owned(a)));
  // An owned entry replaces a plain value of any expiration.
  NodeId k2 = NodeId::from_key("other");
  EXPECT_EQ(s.store(k2, std::nullopt, "\x02", 10000, 100), Storage::Result::kStored);
  EXPECT_EQ(s.store(k2, std::string("name"), "\x03", 200, 100), Storage::Result::kOlder);
  EXPECT_EQ(s.store(k2, owned(a), signed_entry(a, k2, owned(a), "\x01", 200), 100), Storage::Result::kStored);
  // ... and merging answers gives the same result in either order.
  Record plain, dict, m1, m2;
  plain.plain = ValueEntry("\x02", 10000);
  dict.is_dict = true;
  dict.dict[owned(a)] = signed_entry(a, k, owned(a), "\x01", 200);
  merge_record(m1, plain);
  merge_record(m1, dict);
  merge_record(m2, dict);
  merge_record(m2, plain);
  EXPECT_TRUE(m1.is_dict);
  EXPECT_EQ(m1.dict, m2.dict);
}

TEST(Storage, ExpirationRangeAndCheckOnlyForWinningWrites) {
  Storage s;
  NodeId k = NodeId::from_key("k");
  double now = 1000;
  EXPECT_EQ(s.store(k, std::nullopt, "x", now + kMaxTtlS + kClockSkewS + 1, now), Storage::Result::kTooFar);
  EXPECT_EQ(s.store(k, std::nullopt, "x", std::numeric_limits<double>::infinity(), now), Storage::Result::kTooFar);
  EXPECT_EQ(s.store(k, std::nullopt, "x", std::nan(""), now), Storage::Result::kExpired);
  EXPECT_EQ(s.store(k, std::nullopt, "x", now, now), Storage::Result::kExpired);
  EXPECT_EQ(s.store(k, std::nullopt, "x", now + kMaxTtlS, now), Storage::Result::kStored);

  int calls = 0;
  EntryCheck refuse = [&](const std::optional<std::string>&, const ValueEntry&) {
    calls++;
    return false;
  };
  EntryCheck accept = [&](const std::optional<std::string>&, const ValueEntry&) {
    calls++;
    return true;
  };
  EXPECT_EQ(s.store(k, "s", ValueEntry("a", now + 10), now, refuse), Storage::Result::kOlder);
  EXPECT_EQ(calls, 0);  // the plain value is newer: refused before any check
  EXPECT_EQ(s.store(k, "s", ValueEntry("a", now + kMaxTtlS + 1), now, refuse), Storage::Result::kRejected);
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(s.get(k, now)->is_dict);  // the refused write changed nothing
  NodeId d = NodeId::from_key("d");
  EXPECT_EQ(s.store(d, "s", ValueEntry("a", now + 10), now, accept), Storage::Result::kStored);
  EXPECT_EQ(s.store(d, "s", ValueEntry("a", now + 10), now, accept), Storage::Result::kOlder);
  EXPECT_EQ(calls, 2);  // the duplicate was refused before any check
}
