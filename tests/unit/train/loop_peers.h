// Several peers (Rpc + DhtNode each, listening on 127.0.0.1) on one libuv loop,
// for the coordination tests of collaborative training.
#pragma once
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "../net/loop_util.h"
#include "net/dht_node.h"

namespace traintest {

using engine::net::DhtNode;
using engine::net::DhtOptions;
using engine::net::Rpc;
using engine::net::RpcOptions;

struct LoopPeers : ::testing::Test {
  uv_loop_t loop;
  std::vector<std::unique_ptr<Rpc>> rpcs;
  std::vector<std::unique_ptr<DhtNode>> nodes;
  std::vector<bool> alive;

  void SetUp() override { uv_loop_init(&loop); }
  // Fixtures holding objects on these peers (matchmakers, servers) free them first.
  virtual void release_users() {}
  void TearDown() override {
    release_users();
    for (size_t i = 0; i < nodes.size(); i++) kill(i);
    nodes.clear();
    rpcs.clear();
    nettest::drain_loop(&loop);
    EXPECT_EQ(uv_loop_close(&loop), 0);
  }
  static DhtOptions dht_opts() {
    DhtOptions o;
    o.k = 5;
    o.rpc_timeout_ms = 1000;
    o.refresh_interval_ms = 100000;
    o.republish_interval_ms = 100000;
    return o;
  }
  // A peer joined through peer 0 (the first one starts the swarm).
  size_t add(bool listen = true, RpcOptions ro = {}) {
    rpcs.push_back(std::make_unique<Rpc>(&loop, ro));
    if (listen) rpcs.back()->listen("127.0.0.1:0");
    nodes.push_back(std::make_unique<DhtNode>(*rpcs.back(), dht_opts()));
    alive.push_back(true);
    size_t j = nodes.size() - 1;
    if (j > 0) {
      bool done = false;
      nodes[j]->bootstrap({rpcs[0]->address()}, [&](size_t known, const std::string& err) {
        EXPECT_GT(known, 0u) << err;
        done = true;
      });
      EXPECT_TRUE(run_until([&] { return done; }));
    }
    return j;
  }
  void grow(int n) {
    for (int i = 0; i < n; i++) add();
  }
  void kill(size_t i) {
    if (!alive[i]) return;
    alive[i] = false;
    nodes[i]->stop();
    rpcs[i]->close();
  }
  bool run_until(const std::function<bool()>& pred, int timeout_ms = 10000) {
    return nettest::run_until(&loop, pred, timeout_ms);
  }
  void sleep_ms(int ms) {
    run_until([] { return false; }, ms);
  }
};

}  // namespace traintest
