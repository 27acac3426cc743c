// Matchmaking on loopback: 1, 3 and 5 peers agree on one group (same members in
// the same order, same round id); a client-mode peer joins without leading; a
// leader that dies is replaced; a late joiner is refused and averages alone.
#include <gtest/gtest.h>

#include <algorithm>

#include "loop_peers.h"
#include "train/match_messages.h"
#include "train/matchmaking.h"

using namespace engine;
using namespace engine::train;

namespace {

MatchmakingConfig quick() {
  MatchmakingConfig c;
  c.gather_ms = 300;
  c.join_window_ms = 800;
  c.rpc_timeout_ms = 1500;
  return c;
}

struct Match : traintest::LoopPeers {
  std::vector<std::unique_ptr<Matchmaker>> makers;
  std::vector<std::optional<RoundSpec>> specs;

  void release_users() override { makers.clear(); }
  size_t peer(bool listen = true) {
    size_t i = add(listen);
    makers.push_back(std::make_unique<Matchmaker>(*rpcs[i], *nodes[i]));
    specs.emplace_back();
    return i;
  }
  GroupMember member(size_t i) {
    GroupMember m;
    m.id = rpcs[i]->id();
    m.addr = rpcs[i]->address();
    m.bandwidth = 1.0 + (double)i;
    m.client_mode = m.addr.empty();
    return m;
  }
  void start(size_t i, int64_t epoch = 3, MatchmakingConfig cfg = quick()) {
    makers[i]->form_group("run1", epoch, member(i), 10.0 + (double)i, cfg, [this, i](RoundSpec s) {
      EXPECT_FALSE(specs[i].has_value()) << "done called twice";
      specs[i] = std::move(s);
    });
  }
  bool all_done(const std::vector<size_t>& who) {
    return run_until([&] {
      for (size_t i : who)
        if (!specs[i]) return false;
      return true;
    });
  }
  // Every peer in `who` got the same group, containing exactly `who`, sorted by id.
  void expect_one_group(const std::vector<size_t>& who) {
    const RoundSpec& first = *specs[who[0]];
    ASSERT_EQ(first.members.size(), who.size());
    std::vector<net::NodeId> ids;
    for (size_t i : who) ids.push_back(rpcs[i]->id());
    std::sort(ids.begin(), ids.end());
    for (size_t k = 0; k < ids.size(); k++) EXPECT_EQ(first.members[k].id, ids[k]);
    for (size_t i : who)  // each member's announced weight (its samples) reaches everyone
      for (auto& m : first.members)
        if (m.id == rpcs[i]->id()) {
          EXPECT_EQ(m.weight, 10.0 + (double)i);
        }
    for (size_t i : who) {
      const RoundSpec& s = *specs[i];
      EXPECT_EQ(s.round_id, first.round_id);
      ASSERT_EQ(s.members.size(), first.members.size());
      for (size_t k = 0; k < s.members.size(); k++) {
        EXPECT_EQ(s.members[k].id, first.members[k].id);
        EXPECT_EQ(s.members[k].addr, first.members[k].addr);
        EXPECT_EQ(s.members[k].client_mode, first.members[k].client_mode);
        EXPECT_EQ(s.members[k].weight, first.members[k].weight);
      }
      ASSERT_GE(s.my_index, 0);
      EXPECT_EQ(s.members[(size_t)s.my_index].id, rpcs[i]->id());
    }
  }
  // Peer `from` sends an avg.join body to peer `to` directly; the error it gets ("" if none).
  std::string join_error(size_t from, size_t to, const std::string& body) {
    std::string err = "(no reply)";
    bool done = false;
    rpcs[from]->call(rpcs[to]->address(), "avg.join", body, 2000, [&](const net::Reply& r) {
      err = r.ok() ? "" : r.message;
      done = true;
    });
    EXPECT_TRUE(run_until([&] { return done; }));
    return err;
  }
  size_t lowest(const std::vector<size_t>& who) {
    return *std::min_element(who.begin(), who.end(), [&](size_t a, size_t b) { return rpcs[a]->id() < rpcs[b]->id(); });
  }
};

std::vector<size_t> range(size_t n) {
  std::vector<size_t> v(n);
  for (size_t i = 0; i < n; i++) v[i] = i;
  return v;
}

}  // namespace

TEST_F(Match, OnePeerIsAGroupOfOne) {
  peer();
  start(0);
  ASSERT_TRUE(all_done({0}));
  ASSERT_EQ(specs[0]->members.size(), 1u);
  EXPECT_EQ(specs[0]->my_index, 0);
  EXPECT_EQ(specs[0]->members[0].id, rpcs[0]->id());
}

TEST_F(Match, ThreePeersAgree) {
  for (int i = 0; i < 3; i++) peer();
  for (size_t i = 0; i < 3; i++) start(i);
  ASSERT_TRUE(all_done(range(3)));
  expect_one_group(range(3));
  // The round id names the leader: the lowest id.
  EXPECT_NE(specs[0]->round_id.find(rpcs[lowest(range(3))]->id().short_hex()), std::string::npos);
}

TEST_F(Match, FivePeersWithAClientAgree) {
  for (int i = 0; i < 4; i++) peer();
  size_t c = peer(false);  // client mode: joins, never leads
  for (size_t i = 0; i < 5; i++) start(i);
  ASSERT_TRUE(all_done(range(5)));
  expect_one_group(range(5));
  int clients = 0;
  for (auto& m : specs[0]->members) clients += m.client_mode;
  EXPECT_EQ(clients, 1);
  EXPECT_TRUE(specs[c]->members[(size_t)specs[c]->my_index].client_mode);
  EXPECT_EQ(specs[c]->members[(size_t)specs[c]->my_index].addr, "");
}

TEST_F(Match, DeadLeaderIsReplaced) {
  for (int i = 0; i < 5; i++) peer();
  for (size_t i = 0; i < 5; i++) start(i);
  // The would-be leader dies after announcing, before anyone reads the key.
  size_t dead = lowest(range(5));
  sleep_ms(100);
  kill(dead);
  std::vector<size_t> rest;
  for (size_t i = 0; i < 5; i++)
    if (i != dead) rest.push_back(i);
  ASSERT_TRUE(all_done(rest));
  expect_one_group(rest);
  EXPECT_NE(specs[rest[0]]->round_id.find(rpcs[lowest(rest)]->id().short_hex()), std::string::npos);
}

TEST_F(Match, LeaderDyingWhileHoldingJoins) {
  // A client that announced but never joins keeps the leader waiting, so the
  // followers' joins are held by the leader when it dies.
  MatchmakingConfig cfg = quick();
  cfg.join_window_ms = 2000;
  cfg.rpc_timeout_ms = 4000;
  for (int i = 0; i < 4; i++) peer();
  size_t silent = peer(false);
  for (size_t i = 0; i < 5; i++) start(i, 3, cfg);
  makers[silent].reset();  // its announcement is on its way to the DHT; it never joins
  size_t dead = lowest({0, 1, 2, 3});
  sleep_ms(600);  // past the gather: the others are waiting on the leader
  kill(dead);
  std::vector<size_t> rest;
  for (size_t i = 0; i < 4; i++)
    if (i != dead) rest.push_back(i);
  ASSERT_TRUE(all_done(rest));
  expect_one_group(rest);
}

TEST_F(Match, LateJoinerIsRefused) {
  for (int i = 0; i < 4; i++) peer();
  for (size_t i = 0; i < 3; i++) start(i);
  ASSERT_TRUE(all_done(range(3)));
  expect_one_group(range(3));
  start(3);  // same epoch, after the group closed
  ASSERT_TRUE(all_done({3}));
  ASSERT_EQ(specs[3]->members.size(), 1u);
  EXPECT_EQ(specs[3]->members[0].id, rpcs[3]->id());
  EXPECT_EQ(specs[0]->members.size(), 3u);
  // A direct join to the closed leader gets an error reply.
  size_t leader = lowest(range(3));
  const std::string err = join_error(3, leader, encode_join("run1", 3, member(3), 1.0));
  EXPECT_NE(err.find("closed"), std::string::npos) << err;
}

TEST_F(Match, ImpersonatedJoinIsRefused) {
  for (int i = 0; i < 2; i++) peer();
  start(0);
  GroupMember someone_else = member(1);
  someone_else.id = net::NodeId::random();  // not the caller's id
  someone_else.addr = "127.0.0.1:9";
  const std::string err = join_error(1, 0, encode_join("run1", 3, someone_else, 1.0));
  EXPECT_NE(err.find("not the caller"), std::string::npos) << err;
  ASSERT_TRUE(all_done({0}));
  EXPECT_EQ(specs[0]->members.size(), 1u);
}
