// The health page's data: snapshot -> /api/v1/state JSON (gaps, order, nulls,
// run progress), the page's self-containment, and a SwarmWatcher crawling a
// real DHT node on loopback, served over HTTP.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "net/server_info.h"
#include "net/swarm_index.h"
#include "train/net_thread.h"
#include "web/health_routes.h"
#include "web/health_state.h"
#include "web/http_server.h"
#include "web/net_metrics.h"

using namespace engine;
using namespace engine::web;
using nlohmann::json;

namespace {

net::ServerInfo server(const std::string& model, const std::string& id, int64_t first, int64_t last,
                       net::ServerState st) {
  net::ServerInfo s;
  s.id = id;
  s.model = model;
  s.first = first, s.last = last, s.state = st;
  s.throughput = 10;
  s.inference_rps = 1;
  s.address = "127.0.0.1:1";
  s.public_name = "<b>x</b>";
  return s;
}

SwarmSnapshot sample() {
  SwarmSnapshot s;
  s.time = 100, s.crawls = 3, s.status = "ok";
  SwarmSnapshot::Model m;
  m.entry = {"m", 6, 64};
  m.servers["bb"] = server("m", "bb", 0, 2, net::ServerState::kOnline);
  m.servers["bb"].inference_rps = std::nan("");
  m.servers["aa"] = server("m", "aa", 2, 3, net::ServerState::kOnline);
  m.servers["cc"] = server("m", "cc", 3, 6, net::ServerState::kJoining);
  m.coverage = net::block_coverage(m.servers, 6);
  s.models.push_back(m);
  SwarmSnapshot::Run r;
  r.entry = {"demo.s0", "demo", 40};
  train::PeerProgress a, b;
  a.peer = "@a", a.epoch = 2, a.samples = 10, a.samples_per_s = 5, a.loss = 2.0;
  b.peer = "@b", b.epoch = 2, b.samples = 6, b.samples_per_s = 3, b.loss = 3.0;
  r.progress.records = {a, b};
  r.progress.epoch = 2, r.progress.samples_at_epoch = 16, r.progress.samples_per_s = 8;
  r.progress.peers = 2, r.progress.peers_at_epoch = 2;
  s.runs.push_back(r);
  return s;
}

}  // namespace

TEST(HealthState, CoverageGaps) {
  EXPECT_TRUE(coverage_gaps({1, 2, 1}).empty());
  auto g = coverage_gaps({0, 1, 0, 0, 1, 0});
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(g[0], (std::pair<int64_t, int64_t>{0, 1}));
  EXPECT_EQ(g[1], (std::pair<int64_t, int64_t>{2, 4}));
  EXPECT_EQ(g[2], (std::pair<int64_t, int64_t>{5, 6}));
}

TEST(HealthState, SnapshotToJson) {
  WatcherOptions o;
  o.role = "dht", o.address = "127.0.0.1:5", o.swarm = "s", o.interval_s = 2;
  json j = health_state_json(sample(), o, 101.5);
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["node"]["role"], "dht");
  EXPECT_EQ(j["node"]["swarm"], "s");
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["crawls"], 3);
  EXPECT_DOUBLE_EQ(j["age_s"].get<double>(), 1.5);
  const json& m = j["models"][0];
  EXPECT_EQ(m["name"], "m");
  EXPECT_EQ(m["n_blocks"], 6);
  EXPECT_FALSE(m["complete"].get<bool>());
  EXPECT_EQ(m["gaps"], json::parse("[[3, 6]]"));  // the joining server covers nothing yet
  ASSERT_EQ(m["blocks"].size(), 6u);
  EXPECT_EQ(m["blocks"][2]["servers"], json::parse(R"(["aa"])"));
  EXPECT_TRUE(m["blocks"][3]["gap"].get<bool>());
  EXPECT_FALSE(m["blocks"][0]["gap"].get<bool>());
  ASSERT_EQ(m["servers"].size(), 3u);
  EXPECT_EQ(m["servers"][0]["id"], "bb");  // by first block
  EXPECT_EQ(m["servers"][2]["state"], "joining");
  EXPECT_TRUE(m["servers"][0]["inference_rps"].is_null());  // NaN is not JSON
  EXPECT_EQ(m["servers"][0]["public_name"], "<b>x</b>");    // data, escaped by the page, not here
  const json& r = j["runs"][0];
  EXPECT_EQ(r["name"], "demo.s0");
  EXPECT_EQ(r["parent"], "demo");
  EXPECT_EQ(r["target_batch"], 40);
  EXPECT_EQ(r["samples"], 16);
  EXPECT_EQ(r["n_peers"], 2);
  EXPECT_DOUBLE_EQ(r["loss"].get<double>(), 2.5);
  EXPECT_DOUBLE_EQ(r["eta_s"].get<double>(), 3.0);  // (40 - 16) / 8
  EXPECT_EQ(r["peers"].size(), 2u);
  // Nothing crawled yet: nulls, not zeros.
  json empty = health_state_json(SwarmSnapshot{}, o, 5);
  EXPECT_TRUE(empty["updated"].is_null());
  EXPECT_EQ(empty["status"], "joining");
  EXPECT_TRUE(empty["models"].empty());
}

TEST(HealthPage, SelfContained) {
  std::string page = health_page_html();
  EXPECT_NE(page.find("/api/v1/state"), std::string::npos);
  EXPECT_NE(page.find("data-gap"), std::string::npos);
  for (const char* outside : {"http://", "https://", "src=", "<link"}) EXPECT_EQ(page.find(outside), std::string::npos) << outside;
  EXPECT_EQ(page.find("innerHTML"), std::string::npos);  // peer-written strings never become markup
}

// A DHT node with one model announced; a watcher joins through it and crawls; the
// state is served over HTTP.
TEST(SwarmWatcher, CrawlsADhtNodeAndServesTheState) {
  train::NetThread node("127.0.0.1:0", {});
  ASSERT_TRUE(node.run(
      [&node](std::function<void()> done) {
        net::DhtNode& dht = node.dht();
        double exp = dht.now() + 60;
        net::ServerInfo s = server("tiny", "", 0, 2, net::ServerState::kOnline);
        auto pending = std::make_shared<int>(4);
        auto fin = [pending, done](bool) {
          if (--*pending == 0) done();
        };
        for (int b = 0; b < 2; b++)
          dht.put(net::block_key("tiny", b), net::peer_subkey(dht.id().hex()), net::encode_server_info(s), exp,
                  [fin](int n, int, const net::LookupStats&) { fin(n > 0); });
        net::publish_model_entry(dht, {"tiny", 3, 8}, exp, fin);
        net::publish_run_entry(dht, {"demo", "", 16}, exp, fin);
      },
      10000));

  WatcherOptions o;
  o.peers = {node.address()};
  o.interval_s = 0.1;
  o.role = "test";
  SwarmWatcher w(o);
  w.start();
  std::shared_ptr<const SwarmSnapshot> snap;
  for (int i = 0; i < 200; i++) {  // <= 10 s
    snap = w.snapshot();
    if (snap->crawls > 0 && snap->models.size() == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(snap->models.size(), 1u) << snap->status;
  EXPECT_EQ(snap->status, "ok");
  EXPECT_EQ(snap->models[0].entry.name, "tiny");
  EXPECT_EQ(snap->models[0].coverage, (std::vector<int>{1, 1, 0}));
  ASSERT_EQ(snap->models[0].servers.size(), 1u);
  EXPECT_EQ(snap->models[0].servers.begin()->first, node.id().hex());
  ASSERT_EQ(snap->runs.size(), 1u);
  EXPECT_EQ(snap->runs[0].entry.target_batch, 16);

  HttpServer http(HttpOptions{"127.0.0.1:0"});
  add_health_routes(http.routes(), w);
  Metrics metrics;
  declare_net_metrics(metrics);
  add_metrics_route(http.routes(), metrics);
  http.start();
  httplib::Client c("127.0.0.1", http.port());
  auto r = c.Get("/api/v1/state");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  json j = json::parse(r->body);
  EXPECT_EQ(j["node"]["role"], "test");
  EXPECT_EQ(j["models"][0]["gaps"], json::parse("[[2, 3]]"));
  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_NE(page->body.find("<title>engine swarm health</title>"), std::string::npos);
  auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("engine_rpc_requests_total 0"), std::string::npos);
  http.stop();
  w.stop();
}
