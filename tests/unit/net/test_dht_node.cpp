// A small swarm of DHT nodes on one loop (each with its own listener on
// 127.0.0.1): bootstrap, put/get, dictionary merge, owner-only subkeys, and
// values surviving dead nodes.
#include <gtest/gtest.h>

#include "dht_test_util.h"
#include "loop_util.h"
#include "net/dht_node.h"

using namespace engine::net;
using nettest::run_until;
using nettest::str_value;

namespace {


struct Swarm : ::testing::Test {
  uv_loop_t loop;
  std::vector<std::unique_ptr<Rpc>> rpcs;
  std::vector<std::unique_ptr<DhtNode>> nodes;
  std::vector<bool> alive;

  void SetUp() override { uv_loop_init(&loop); }
  void TearDown() override {
    for (size_t i = 0; i < nodes.size(); i++) kill(i);
    nodes.clear();
    rpcs.clear();
    nettest::drain_loop(&loop);
    EXPECT_EQ(uv_loop_close(&loop), 0);
  }
  DhtOptions dht_opts() {
    DhtOptions o;
    o.k = 5;  // small k so that a 12-node swarm has non-holders
    o.rpc_timeout_ms = 1000;
    o.refresh_interval_ms = 100000;
    o.republish_interval_ms = 100000;
    return o;
  }
  size_t add(bool listen = true) {
    rpcs.push_back(std::make_unique<Rpc>(&loop));
    if (listen) rpcs.back()->listen("127.0.0.1:0");
    nodes.push_back(std::make_unique<DhtNode>(*rpcs.back(), dht_opts()));
    alive.push_back(true);
    return nodes.size() - 1;
  }
  void kill(size_t i) {
    if (!alive[i]) return;
    alive[i] = false;
    nodes[i]->stop();
    rpcs[i]->close();
  }
  void grow(int n) {
    add();
    for (int i = 1; i < n; i++) {
      size_t j = add();
      bool done = false;
      nodes[j]->bootstrap({rpcs[0]->address()}, [&](size_t known, const std::string& err) {
        EXPECT_GT(known, 0u) << err;
        done = true;
      });
      ASSERT_TRUE(run_until(&loop, [&] { return done; }));
    }
  }
  int put(size_t from, const std::string& key, const std::optional<std::string>& sub, const std::string& v,
          double ttl = 600) {
    return nettest::put_str(&loop, *nodes[from], key, sub, v, ttl);
  }
  GetResult get(size_t from, const std::string& key) { return nettest::get_now(&loop, *nodes[from], key); }
};

// (Built with += : GCC 12 warns falsely about "literal" + std::string.)
std::string numbered(const char* prefix, int i) {
  std::string s = prefix;
  s += std::to_string(i);
  return s;
}

std::string text_of(const std::string& packed) {
  auto oh = unpack_untrusted(packed.data(), packed.size());
  return std::string(as_str(oh.get(), "value"));
}

}  // namespace

TEST_F(Swarm, PutOnOneGetFromEveryOther) {
  grow(12);
  EXPECT_GE(put(3, "alpha", std::nullopt, "A"), 5);
  for (size_t i = 0; i < nodes.size(); i++) {
    GetResult r = get(i, "alpha");
    ASSERT_TRUE(r.found) << "node " << i;
    EXPECT_EQ(text_of(r.record.plain.value), "A");
  }
  EXPECT_FALSE(get(5, "missing").found);
}

TEST_F(Swarm, NewerValueWinsAndDictionariesMerge) {
  grow(8);
  put(1, "k", std::nullopt, "old", 100);
  put(2, "k", std::nullopt, "new", 200);
  EXPECT_EQ(text_of(get(7, "k").record.plain.value), "new");
  put(1, "servers", "s1", "one");
  put(4, "servers", "s2", "two");
  put(6, "servers", "s3", "three");
  GetResult r = get(0, "servers");
  ASSERT_TRUE(r.found && r.record.is_dict);
  EXPECT_EQ(r.record.dict.size(), 3u);
  EXPECT_EQ(text_of(r.record.dict["s2"].value), "two");
}

TEST_F(Swarm, OwnedSubkeysOnlyByTheirOwner) {
  grow(6);
  std::string mine = nodes[2]->id().hex();
  mine.insert(0, 1, '@');
  EXPECT_GT(put(2, "block.0", mine, "by owner"), 0);
  EXPECT_EQ(put(3, "block.0", mine, "forged", 1000), 0);  // everyone refuses
  GetResult r = get(4, "block.0");
  ASSERT_TRUE(r.found);
  EXPECT_EQ(text_of(r.record.dict[mine].value), "by owner");
}

TEST_F(Swarm, ClientWithoutListenerStaysOutOfTables) {
  grow(5);
  size_t c = add(false);
  bool done = false;
  nodes[c]->bootstrap({rpcs[0]->address()}, [&](size_t, const std::string&) { done = true; });
  ASSERT_TRUE(run_until(&loop, [&] { return done; }));
  EXPECT_GT(put(c, "from-client", std::nullopt, "x"), 0);
  EXPECT_TRUE(get(1, "from-client").found);
  for (size_t i = 0; i < 5; i++)
    for (auto& ct : nodes[i]->table().all()) EXPECT_NE(ct.id, nodes[c]->id());
}

TEST_F(Swarm, ValuesSurviveDeadNodesAndDeadPeersGetBanned) {
  grow(12);
  for (int i = 0; i < 6; i++) put(i, numbered("key", i), std::nullopt, numbered("v", i));
  // Kill a third, including writers and the bootstrap node.
  for (size_t i : {0, 2, 4, 9}) kill(i);
  for (size_t i : {1, 3, 5, 6, 7, 8, 10, 11})
    for (int k = 0; k < 6; k++) {
      GetResult r = get(i, numbered("key", k));
      ASSERT_TRUE(r.found) << "node " << i << " key" << k;
      EXPECT_EQ(text_of(r.record.plain.value), numbered("v", k));
    }
  // Whoever tried a dead node has it banned and out of its table.
  size_t bans = 0;
  for (size_t i : {1, 3, 5})
    for (size_t d : {0, 2, 4, 9}) {
      bans += nodes[i]->banned(rpcs[d]->address());
      EXPECT_FALSE(nodes[i]->table().find(nodes[d]->id()));
    }
  EXPECT_GT(bans, 0u);
  // Republish moves replicas onto live nodes; a late joiner finds everything.
  for (size_t i = 0; i < nodes.size(); i++)
    if (alive[i]) nodes[i]->republish_now();
  run_until(&loop, [] { return false; }, 300);
  size_t late = add();
  bool done = false;
  nodes[late]->bootstrap({rpcs[7]->address()}, [&](size_t, const std::string&) { done = true; });
  ASSERT_TRUE(run_until(&loop, [&] { return done; }));
  for (int k = 0; k < 6; k++) EXPECT_TRUE(get(late, numbered("key", k)).found) << k;
}

TEST_F(Swarm, BootstrapFailsCleanlyWithNoPeers) {
  size_t a = add();
  Rpc tmp(&loop);
  std::string dead = tmp.listen("127.0.0.1:0");
  tmp.close();
  std::string err;
  bool done = false;
  nodes[a]->bootstrap({dead}, [&](size_t known, const std::string& e) {
    EXPECT_EQ(known, 0u);
    err = e;
    done = true;
  });
  ASSERT_TRUE(run_until(&loop, [&] { return done; }));
  EXPECT_NE(err.find("no initial peer answered"), std::string::npos) << err;
}

TEST(DhtSubkeys, OwnerSyntax) {
  NodeId id = NodeId::random();
  std::string sub = id.hex();
  sub.insert(0, 1, '@');
  EXPECT_EQ(subkey_owner(sub), id);
  EXPECT_FALSE(subkey_owner("plain"));
  EXPECT_FALSE(subkey_owner(sub.substr(0, 40)));
}
