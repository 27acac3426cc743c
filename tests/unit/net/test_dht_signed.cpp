// Signed records in a live swarm on one loop: honest owned records round-trip
// through put, replication and get with their signatures; a hostile peer that
// pushes forged or replayed records straight into every node's dht.store, and answers
// lookups with forged records, gets none of them stored or returned.
#include <gtest/gtest.h>

#include "dht_test_util.h"
#include "loop_util.h"
#include "net/dht_node.h"

using namespace engine::net;
using nettest::run_until;
using nettest::str_value;

namespace {

std::string text_of(const std::string& packed) {
  auto oh = unpack_untrusted(packed.data(), packed.size());
  return std::string(as_str(oh.get(), "value"));
}
std::string owned(const NodeId& id) {
  std::string s = id.hex();
  s.insert(0, 1, '@');
  return s;
}
std::string pk_of(const Identity& who) { return {(const char*)who.public_key().data(), kPublicKeyBytes}; }

struct Signed : ::testing::Test {
  uv_loop_t loop;
  std::vector<std::unique_ptr<Rpc>> rpcs;
  std::vector<std::unique_ptr<DhtNode>> nodes;

  void SetUp() override { uv_loop_init(&loop); }
  void TearDown() override {
    for (auto& n : nodes)
      if (n) n->stop();
    for (auto& r : rpcs) r->close();
    nodes.clear();
    rpcs.clear();
    nettest::drain_loop(&loop);
    EXPECT_EQ(uv_loop_close(&loop), 0);
  }
  // n honest nodes with k = n, so every node holds every key and a hostile
  // peer in their tables is asked by every lookup.
  void grow(int n) {
    for (int i = 0; i < n; i++) {
      rpcs.push_back(std::make_unique<Rpc>(&loop));
      rpcs.back()->listen("127.0.0.1:0");
      DhtOptions o;
      o.k = (size_t)n;
      o.rpc_timeout_ms = 1000;
      o.refresh_interval_ms = o.republish_interval_ms = 100000;
      nodes.push_back(std::make_unique<DhtNode>(*rpcs.back(), o));
      if (i == 0) continue;
      bool done = false;
      nodes.back()->bootstrap({rpcs[0]->address()}, [&](size_t, const std::string&) { done = true; });
      ASSERT_TRUE(run_until(&loop, [&] { return done; }));
    }
  }
  void kill(size_t i) {
    nodes[i]->stop();
    rpcs[i]->close();
    nodes[i].reset();
  }
  int put(size_t from, const std::string& key, const std::optional<std::string>& sub, const std::string& v,
          double ttl = 600) {
    return nettest::put_str(&loop, *nodes[from], key, sub, v, ttl);
  }
  GetResult get(size_t from, const std::string& key) { return nettest::get_now(&loop, *nodes[from], key); }
  // Raw dht.store from `from` to `to`; the per-item answers.
  std::vector<bool> raw_store(Rpc& from, const std::string& to, const std::vector<StoreItem>& items, bool replica) {
    std::vector<bool> out;
    bool done = false;
    from.call(to, "dht.store", encode_store_args(items, replica), 2000, [&](const Reply& r) {
      EXPECT_TRUE(r.ok()) << r.message;
      if (r.ok()) {
        auto& st = as_array(need_field(*r.result, "stored"), "stored");
        for (uint32_t i = 0; i < st.via.array.size; i++) out.push_back(as_bool(st.via.array.ptr[i], "stored"));
      }
      done = true;
    });
    EXPECT_TRUE(run_until(&loop, [&] { return done; }));
    return out;
  }
};

}  // namespace

TEST_F(Signed, OwnedRecordsRoundTripThroughReplicationWithTheirSignature) {
  grow(5);
  std::string sub = owned(nodes[1]->id());
  EXPECT_GE(put(1, "block.0", sub, "by owner"), 4);
  EXPECT_EQ(put(2, "block.0", sub, "not mine"), 0);  // cannot sign for node 1
  NodeId key = NodeId::from_key("block.0");
  PublicKey owner_pk = rpcs[1]->identity().public_key();
  // The owner leaves; the holders replicate among themselves, and a late
  // joiner that receives only replicas still gets the owner's signed record.
  kill(1);
  for (auto& n : nodes)
    if (n) n->republish_now();
  run_until(&loop, [] { return false; }, 200);
  rpcs.push_back(std::make_unique<Rpc>(&loop));
  rpcs.back()->listen("127.0.0.1:0");
  nodes.push_back(std::make_unique<DhtNode>(*rpcs.back(), DhtOptions{}));
  bool done = false;
  nodes.back()->bootstrap({rpcs[3]->address()}, [&](size_t, const std::string&) { done = true; });
  ASSERT_TRUE(run_until(&loop, [&] { return done; }));
  for (size_t i : {0, 2, 3, 4}) nodes[i]->republish_now();
  size_t late = nodes.size() - 1;
  ASSERT_TRUE(run_until(&loop, [&] { return nodes[late]->storage().get(key, nodes[late]->now()).has_value(); }));
  Record held = *nodes[late]->storage().get(key, nodes[late]->now());
  ASSERT_TRUE(held.dict.count(sub));
  const ValueEntry& e = held.dict[sub];
  EXPECT_EQ(text_of(e.value), "by owner");
  EXPECT_EQ(e.pk, std::string((const char*)owner_pk.data(), owner_pk.size()));
  EXPECT_EQ(check_record(key, sub, e.value, e.expiration, e.pk, e.sig), RecordCheck::kOk);
  GetResult r = get(late, "block.0");
  ASSERT_TRUE(r.found);
  EXPECT_EQ(text_of(r.record.dict[sub].value), "by owner");
  for (auto& n : nodes) {
    if (n) {
      EXPECT_EQ(n->rejected_records(), 0u);
    }
  }
}

TEST_F(Signed, HostilePeerCannotPlantOrServeForgedRecords) {
  grow(5);
  std::string key_s = "block.7";
  NodeId key = NodeId::from_key(key_s);
  const Identity& victim = rpcs[1]->identity();
  std::string vsub = owned(victim.id());
  ASSERT_GE(put(1, key_s, vsub, "genuine"), 5);
  ValueEntry genuine = nodes[0]->storage().get(key, nodes[0]->now())->dict.at(vsub);

  // The hostile peer: its own key pair, a listener, and answers of its own to dht.find.
  rpcs.push_back(std::make_unique<Rpc>(&loop));
  Rpc& bad = *rpcs.back();
  const Identity& evil = bad.identity();
  bad.listen("127.0.0.1:0");
  double now = nodes[0]->now();
  std::vector<StoreItem> forged;
  auto add = [&](const std::string& sub, ValueEntry e) { forged.push_back({key, sub, std::move(e), victim.id()}); };
  std::string v = str_value("forged");
  // 1. "@victim" signed by the hostile key.
  add(vsub, ValueEntry(v, now + 900, pk_of(evil), sign_record(evil, key, vsub, v, now + 900)));
  // 2. The victim's record with a modified value, 3. with a later expiration.
  add(vsub, ValueEntry(v, genuine.expiration + 1, genuine.pk, genuine.sig));
  add(vsub, ValueEntry(genuine.value, genuine.expiration + 300, genuine.pk, genuine.sig));
  // 4. Unsigned.
  add(vsub, ValueEntry(v, now + 900));
  // 5. The victim's key claimed, hostile signature.
  add(vsub, ValueEntry(v, now + 900, genuine.pk, sign_record(evil, key, vsub, v, now + 900)));
  // 6. A record the victim really signed, captured and replayed after it expired.
  add(vsub, ValueEntry(v, now - 1, genuine.pk, sign_record(victim, key, vsub, v, now - 1)));
  // 7. A correctly signed record of the hostile's own replayed after it expired,
  //    8. and one set to expire too far ahead (a long replay window).
  std::string esub = owned(evil.id());
  forged.push_back(
      {key, esub, ValueEntry(v, now - 1, pk_of(evil), sign_record(evil, key, esub, v, now - 1)), evil.id()});
  double far = now + kMaxTtlS + 2 * kClockSkewS;
  forged.push_back({key, esub, ValueEntry(v, far, pk_of(evil), sign_record(evil, key, esub, v, far)), evil.id()});
  // 9. A plain value, unauthenticated but allowed, must not wipe the owned entry.
  forged.push_back({key, std::nullopt, ValueEntry(v, now + 3600), evil.id()});

  // As replicas (origin = the owner, so only the signature can tell) to every node.
  for (size_t i = 0; i < nodes.size(); i++) {
    std::vector<bool> st = raw_store(bad, rpcs[i]->address(), forged, true);
    ASSERT_EQ(st.size(), forged.size());
    for (size_t j = 0; j < st.size(); j++) EXPECT_FALSE(st[j]) << "node " << i << " stored forged item " << j;
    Record held = *nodes[i]->storage().get(key, nodes[i]->now());
    EXPECT_EQ(held.dict.at(vsub), genuine) << "node " << i;
    EXPECT_FALSE(held.dict.count(esub));
    EXPECT_GT(nodes[i]->rejected_records(), 0u);
  }

  // The hostile peer joins every table and answers lookups with forged records.
  Record lie;
  lie.is_dict = true;
  lie.dict[vsub] = forged[0].entry;
  lie.dict[owned(NodeId::from_key("x"))] = ValueEntry(v, now + 900);  // an unsigned owned entry
  bad.handle("dht.find", [&](Request& r) {
    Buf b;
    Packer pk(b);
    pk.pack_map(2);
    pack_str(pk, "nodes");
    pk.pack_array(0);
    pack_str(pk, "value");
    pack_record(pk, b, lie);
    r.respond(std::move(b.s));
  });
  int pinged = 0;
  for (size_t i = 0; i < nodes.size(); i++)
    bad.call(rpcs[i]->address(), "dht.ping", empty_map(), 2000, [&](const Reply&) { pinged++; });
  ASSERT_TRUE(run_until(&loop, [&] { return pinged == (int)nodes.size(); }));
  for (size_t i = 0; i < nodes.size(); i++) {
    ASSERT_TRUE(nodes[i]->table().find(bad.id())) << "node " << i;
    uint64_t before = nodes[i]->rejected_records();
    GetResult r = get(i, key_s);
    ASSERT_TRUE(r.found);
    EXPECT_EQ(r.record.dict.size(), 1u) << "node " << i;
    EXPECT_EQ(r.record.dict.at(vsub), genuine) << "node " << i;
    EXPECT_GT(nodes[i]->rejected_records(), before) << "node " << i << " never saw the hostile answer";
  }
  // A key only the hostile peer claims to hold: nothing is found.
  EXPECT_FALSE(get(2, "nothing.here").found);
}
