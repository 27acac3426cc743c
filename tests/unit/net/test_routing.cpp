// Routing (Dijkstra over announced spans) and span choice (Petals' rule) on
// hand-made swarms: no network.
#include <gtest/gtest.h>

#include "net/routing.h"
#include "net/span_choice.h"

using namespace engine::net;

namespace {

ServerInfo srv(const std::string& id, int64_t a, int64_t b, double rps = 100, int64_t cache = 10000,
               ServerState st = ServerState::kOnline) {
  ServerInfo s;
  s.id = id;
  s.state = st;
  s.model = "m";
  s.first = a, s.last = b;
  s.inference_rps = s.forward_rps = s.throughput = rps;
  s.network_rps = 1e9;
  s.cache_tokens_left = cache;
  s.address = "127.0.0.1:" + std::to_string(1000 + a * 10 + b);
  return s;
}

ServerMap swarm(std::vector<ServerInfo> v) {
  ServerMap m;
  for (auto& s : v) m[s.id] = s;
  return m;
}

std::string spans(const Route& r) {
  std::string s;
  for (auto& h : r) s += h.id + "[" + std::to_string(h.first) + ":" + std::to_string(h.last) + ")";
  return s;
}

}  // namespace

TEST(Routing, PrefersOneHopOverTwo) {
  auto m = swarm({srv("a", 0, 2), srv("b", 2, 5), srv("c", 0, 5)});
  EXPECT_EQ(spans(find_route(m, 0, 5, {})), "c[0:5)");
}

TEST(Routing, AvoidsBannedAndOfflineServers) {
  auto m = swarm({srv("a", 0, 2), srv("b", 2, 5), srv("c", 0, 5), srv("d", 0, 5, 1000, 10000, ServerState::kOffline)});
  RouteOptions o;
  o.banned = {"c"};
  EXPECT_EQ(spans(find_route(m, 0, 5, o)), "a[0:2)b[2:5)");
  m["e"] = srv("e", 0, 5, 100, 10000, ServerState::kJoining);
  EXPECT_EQ(spans(find_route(m, 0, 5, o)), "a[0:2)b[2:5)");
}

TEST(Routing, EntersMidSpanLeavesAtSpanEnd) {
  auto m = swarm({srv("a", 0, 3), srv("b", 1, 5)});
  EXPECT_EQ(spans(find_route(m, 0, 5, {})), "a[0:3)b[3:5)");
  // A sub-range (replacing a failed span) is clipped to its end.
  EXPECT_EQ(spans(find_route(m, 1, 2, {})), "a[1:2)");
}

TEST(Routing, UncoveredBlocksGiveNoRoute) {
  auto m = swarm({srv("a", 0, 2), srv("b", 3, 5)});
  EXPECT_TRUE(find_route(m, 0, 5, {}).empty());
  EXPECT_EQ(spans(find_route(m, 3, 5, {})), "b[3:5)");
}

TEST(Routing, FasterChainBeatsFewerHops) {
  // 5 blocks at 10 steps/s = 0.5 s; two hops at 1000 steps/s = 5 ms + 2 RTT.
  auto m = swarm({srv("slow", 0, 5, 10), srv("f1", 0, 2, 1000), srv("f2", 2, 5, 1000)});
  EXPECT_EQ(spans(find_route(m, 0, 5, {})), "f1[0:2)f2[2:5)");
  RouteOptions o;
  o.rtt_s = {{"f1", 1.0}};  // a far-away server makes the slow one better
  EXPECT_EQ(spans(find_route(m, 0, 5, o)), "slow[0:5)");
}

TEST(Routing, ShortOfCacheIsALastResort) {
  auto m = swarm({srv("a", 0, 2), srv("b", 2, 5), srv("c", 0, 5, 100, 3)});
  RouteOptions o;
  o.cache_tokens_needed = 100;
  EXPECT_EQ(spans(find_route(m, 0, 5, o)), "a[0:2)b[2:5)");
  o.banned = {"a"};
  EXPECT_EQ(spans(find_route(m, 0, 5, o)), "c[0:5)");
}

TEST(Routing, ThroughputModeUsesForwardRate) {
  auto a = srv("a", 0, 5, 100), b = srv("b", 0, 5, 100);
  a.forward_rps = 50, b.forward_rps = 5000;
  auto m = swarm({a, b});
  RouteOptions o;
  o.mode = RouteMode::kMaxThroughput;
  o.batch_tokens = 64;
  EXPECT_EQ(spans(find_route(m, 0, 5, o)), "b[0:5)");
}

TEST(SpanChoice, NewServersFillTheWeakestBlocks) {
  ServerMap m;
  const int64_t n = 5;
  std::vector<std::string> got;
  for (int i = 0; i < 3; i++) {
    int64_t st = choose_span_start(m, n, 2);
    m["s" + std::to_string(i)] = srv("s" + std::to_string(i), st, st + 2);
    got.push_back(std::to_string(st));
  }
  EXPECT_EQ(got, (std::vector<std::string>{"0", "2", "3"}));
  for (int c : block_coverage(m, n, ServerState::kJoining)) EXPECT_GE(c, 1);
}

TEST(SpanChoice, ChoosesLeastTotalOfWeakestBlocks) {
  EXPECT_EQ(choose_best_start({5, 5, 1, 1, 9}, 2), 2);
  EXPECT_EQ(choose_best_start({5, 0, 9, 0, 0}, 2), 3);  // (0,0) beats (0,5) and (0,9)
  EXPECT_EQ(choose_best_start({1, 2}, 5), 0);            // longer than the model: clamp
}

TEST(SpanChoice, MovesOnlyWhenBalanceImprovesEnough) {
  std::mt19937_64 rng(1);
  // Two servers on 0:3, nobody on 3:5 (its server died): moving one covers every block.
  auto m = swarm({srv("a", 0, 3), srv("b", 0, 3)});
  double q = 1;
  EXPECT_TRUE(should_move(m, 5, "a", 0.75, rng, &q));
  EXPECT_EQ(choose_span_start(m, 5, 3, "a"), 2);
  auto m2 = swarm({srv("a", 0, 2), srv("b", 0, 2), srv("c", 2, 5), srv("d", 3, 5)});
  // blocks: 0,1 -> 200; 2 -> 100; 3,4 -> 200. Balanced enough: nobody moves.
  EXPECT_FALSE(should_move(m2, 5, "a", 0.75, rng, &q));
  // Three servers stacked on 0:2 while block 2 has one: one of them moves (min 100 -> 200).
  auto m3 = swarm({srv("a", 0, 2), srv("b", 0, 2), srv("c", 0, 2), srv("d", 2, 5), srv("e", 3, 5)});
  EXPECT_TRUE(should_move(m3, 5, "a", 0.75, rng, &q));
  EXPECT_NEAR(q, 0.5, 1e-2);
  EXPECT_EQ(choose_span_start(m3, 5, 2, "a"), 1);
  EXPECT_FALSE(should_move(m3, 5, "d", 0.75, rng, &q));  // d is the only one on block 2
}
