// Ids and the XOR metric, k-buckets, and the storage rules of the DHT.
#include <gtest/gtest.h>

#include <algorithm>

#include "net/dht_routing.h"
#include "net/dht_storage.h"

using namespace engine::net;

static NodeId id_from_hex(const std::string& hex) {
  NodeId id;
  EXPECT_TRUE(NodeId::from_hex(hex, &id));
  return id;
}

TEST(NodeId, XorDistanceAndOrder) {
  NodeId zero, one = id_from_hex("0000000000000000000000000000000000000001");
  NodeId top = id_from_hex("8000000000000000000000000000000000000000");
  EXPECT_EQ(distance(zero, zero), zero);
  EXPECT_EQ(distance(one, top), distance(top, one));  // symmetric
  EXPECT_EQ(distance(one, top).hex(), "8000000000000000000000000000000000000001");
  EXPECT_TRUE(closer(zero, one, top));
  EXPECT_FALSE(closer(zero, top, one));
  EXPECT_FALSE(closer(zero, one, one));  // strict
  // Triangle inequality holds for XOR (as numbers): d(a,c) <= d(a,b) xor-sum bound.
  for (int i = 0; i < 100; i++) {
    NodeId a = NodeId::random(), b = NodeId::random(), c = NodeId::random();
    EXPECT_EQ(distance(distance(a, b), distance(b, c)), distance(a, c));
  }
}

TEST(NodeId, BucketIndex) {
  NodeId self;
  EXPECT_EQ(bucket_index(self, self), -1);
  EXPECT_EQ(bucket_index(self, id_from_hex("0000000000000000000000000000000000000001")), 0);
  EXPECT_EQ(bucket_index(self, id_from_hex("0000000000000000000000000000000000000003")), 1);
  EXPECT_EQ(bucket_index(self, id_from_hex("0000000000000000000000000000000000000100")), 8);
  EXPECT_EQ(bucket_index(self, id_from_hex("8000000000000000000000000000000000000000")), 159);
  EXPECT_EQ(bucket_index(self, id_from_hex("7fffffffffffffffffffffffffffffffffffffff")), 158);
  for (int i = 0; i < NodeId::kBits; i++) {
    NodeId me = NodeId::random();
    EXPECT_EQ(bucket_index(me, random_id_in_bucket(me, i)), i);
  }
}

TEST(NodeId, HexAndKeys) {
  NodeId a = NodeId::random(), b;
  EXPECT_TRUE(NodeId::from_hex(a.hex(), &b));
  EXPECT_EQ(a, b);
  EXPECT_FALSE(NodeId::from_hex("xyz", &b));
  EXPECT_FALSE(NodeId::from_hex(std::string(40, 'g'), &b));
  EXPECT_EQ(NodeId::from_key("llama.0"), NodeId::from_key("llama.0"));
  EXPECT_NE(NodeId::from_key("llama.0"), NodeId::from_key("llama.1"));
}

static Contact contact(const NodeId& id, int port) { return Contact{id, "127.0.0.1:" + std::to_string(port), 0}; }

TEST(RoutingTable, AddRefreshAndNearest) {
  NodeId self = NodeId::random();
  RoutingTable t(self, 20);
  EXPECT_EQ(t.seen(contact(self, 1), 1), RoutingTable::Update::kSelf);
  std::vector<NodeId> ids;
  for (int i = 0; i < 200; i++) {
    ids.push_back(NodeId::random());
    t.seen(contact(ids.back(), 1000 + i), 10);
  }
  NodeId target = NodeId::random();
  auto near = t.nearest(target, 20);
  ASSERT_EQ(near.size(), 20u);
  for (size_t i = 1; i < near.size(); i++) EXPECT_FALSE(closer(target, near[i].id, near[i - 1].id));
  // Nothing in the table is closer than the 20th returned.
  for (auto& c : t.all()) {
    bool listed = std::any_of(near.begin(), near.end(), [&](auto& n) { return n.id == c.id; });
    if (!listed) {
      EXPECT_FALSE(closer(target, c.id, near.back().id));
    }
  }
  EXPECT_EQ(t.seen(contact(near[0].id, 0), 20), RoutingTable::Update::kConflict);  // other address
  const Contact* known = t.find(near[0].id);
  ASSERT_TRUE(known);
  EXPECT_EQ(t.seen(*known, 30), RoutingTable::Update::kRefreshed);
  EXPECT_EQ(t.find(near[0].id)->last_seen_ms, 30u);
}

TEST(RoutingTable, FullBucketKeepsOldPeersUntilTheyFail) {
  NodeId self;  // all zero: ids with the top bit set land in bucket 159
  RoutingTable t(self, 4);
  std::vector<NodeId> ids;
  for (int i = 0; i < 6; i++) {
    NodeId id = NodeId::random();
    id.b[0] |= 0x80;
    ids.push_back(id);
  }
  for (int i = 0; i < 4; i++) EXPECT_EQ(t.seen(contact(ids[i], i), i), RoutingTable::Update::kAdded);
  Contact stale;
  EXPECT_EQ(t.seen(contact(ids[4], 4), 10, &stale), RoutingTable::Update::kBucketFull);
  EXPECT_EQ(stale.id, ids[0]);  // least recently seen
  EXPECT_EQ(t.bucket_size(159), 4u);
  EXPECT_EQ(t.replacements(159), 1u);
  // ids[0] answered its ping: it moves to the back and stays.
  t.seen(contact(ids[0], 0), 11);
  EXPECT_EQ(t.seen(contact(ids[5], 5), 12, &stale), RoutingTable::Update::kBucketFull);
  EXPECT_EQ(stale.id, ids[1]);
  // ids[1] did not answer: it is evicted and the newest replacement takes its place.
  Contact promoted;
  EXPECT_TRUE(t.remove(ids[1], &promoted));
  EXPECT_EQ(promoted.id, ids[5]);
  EXPECT_TRUE(t.find(ids[5]));
  EXPECT_FALSE(t.find(ids[1]));
  EXPECT_EQ(t.bucket_size(159), 4u);
  EXPECT_EQ(t.replacements(159), 1u);  // ids[4] still waits
}

// ---- storage ---------------------------------------------------------------------

TEST(Storage, PlainValueNewestExpirationWins) {
  Storage s;
  NodeId k = NodeId::from_key("k");
  EXPECT_EQ(s.store(k, std::nullopt, "v1", 200, 100), Storage::Result::kStored);
  EXPECT_EQ(s.store(k, std::nullopt, "old", 150, 100), Storage::Result::kOlder);
  EXPECT_EQ(s.store(k, std::nullopt, "tie", 200, 100), Storage::Result::kOlder);
  EXPECT_EQ(s.get(k, 100)->plain.value, "v1");
  EXPECT_EQ(s.store(k, std::nullopt, "v2", 300, 100), Storage::Result::kStored);
  EXPECT_EQ(s.get(k, 100)->plain.value, "v2");
}

TEST(Storage, Expiration) {
  Storage s;
  NodeId k = NodeId::from_key("k");
  EXPECT_EQ(s.store(k, std::nullopt, "v", 100, 100), Storage::Result::kExpired);
  EXPECT_EQ(s.store(k, std::nullopt, "v", 101, 100), Storage::Result::kStored);
  EXPECT_TRUE(s.get(k, 100.5));
  EXPECT_FALSE(s.get(k, 101));
  EXPECT_EQ(s.size(), 0u);
  // After expiry an older write is accepted again: nothing is left to be newer than.
  EXPECT_EQ(s.store(k, std::nullopt, "later", 150, 120), Storage::Result::kStored);
}

TEST(Storage, DictionarySubkeysExpireIndependently) {
  Storage s;
  NodeId k = NodeId::from_key("model.3");
  EXPECT_EQ(s.store(k, "a", "A1", 200, 100), Storage::Result::kStored);
  EXPECT_EQ(s.store(k, "b", "B1", 300, 100), Storage::Result::kStored);
  EXPECT_EQ(s.store(k, "a", "A0", 150, 100), Storage::Result::kOlder);
  EXPECT_EQ(s.store(k, "a", "A2", 250, 100), Storage::Result::kStored);
  auto r = s.get(k, 100);
  ASSERT_TRUE(r && r->is_dict);
  EXPECT_EQ(r->dict.size(), 2u);
  EXPECT_EQ(r->dict["a"].value, "A2");
  r = s.get(k, 260);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->dict.size(), 1u);
  EXPECT_EQ(r->dict.count("b"), 1u);
  EXPECT_FALSE(s.get(k, 300));
}

TEST(Storage, PlainAndDictionaryReplaceEachOtherOnlyWhenNewer) {
  Storage s;
  NodeId k = NodeId::from_key("k");
  s.store(k, "a", "A", 200, 100);
  s.store(k, "b", "B", 300, 100);
  EXPECT_EQ(s.store(k, std::nullopt, "P", 250, 100), Storage::Result::kOlder);  // b is newer
  EXPECT_EQ(s.store(k, std::nullopt, "P", 350, 100), Storage::Result::kStored);
  EXPECT_FALSE(s.get(k, 100)->is_dict);
  EXPECT_EQ(s.store(k, "c", "C", 340, 100), Storage::Result::kOlder);
  EXPECT_EQ(s.store(k, "c", "C", 360, 100), Storage::Result::kStored);
  auto r = s.get(k, 100);
  EXPECT_TRUE(r->is_dict);
  EXPECT_EQ(r->dict.size(), 1u);
}

TEST(Storage, Limits) {
  Storage::Limits L;
  L.max_keys = 3;
  L.max_value_bytes = 8;
  L.max_subkeys = 2;
  Storage s(L);
  EXPECT_EQ(s.store(NodeId::from_key("big"), std::nullopt, "123456789", 200, 100), Storage::Result::kTooLarge);
  NodeId d = NodeId::from_key("d");
  s.store(d, "1", "x", 200, 100);
  s.store(d, "2", "x", 200, 100);
  EXPECT_EQ(s.store(d, "3", "x", 200, 100), Storage::Result::kFull);
  s.store(NodeId::from_key("a"), std::nullopt, "x", 110, 100);
  s.store(NodeId::from_key("b"), std::nullopt, "x", 200, 100);
  EXPECT_EQ(s.store(NodeId::from_key("c"), std::nullopt, "x", 200, 100), Storage::Result::kFull);
  // Once a key expires its room is reclaimed.
  EXPECT_EQ(s.store(NodeId::from_key("c"), std::nullopt, "x", 200, 120), Storage::Result::kStored);
}

TEST(Storage, MergeOfPeerAnswers) {
  Record a, b, plain_new, plain_old;
  a.is_dict = b.is_dict = true;
  a.dict["x"] = {"x-old", 100};
  a.dict["y"] = {"y", 150};
  b.dict["x"] = {"x-new", 200};
  b.dict["z"] = {"z", 120};
  Record m;
  merge_record(m, a);
  merge_record(m, b);
  ASSERT_TRUE(m.is_dict);
  EXPECT_EQ(m.dict.size(), 3u);
  EXPECT_EQ(m.dict["x"].value, "x-new");
  // Merging is order-independent.
  Record m2;
  merge_record(m2, b);
  merge_record(m2, a);
  EXPECT_EQ(m2.dict, m.dict);
  plain_new.plain = {"p", 500};
  plain_old.plain = {"q", 50};
  merge_record(m, plain_old);
  EXPECT_TRUE(m.is_dict);
  merge_record(m, plain_new);
  EXPECT_FALSE(m.is_dict);
  EXPECT_EQ(m.plain.value, "p");
}
