#include <gtest/gtest.h>

#include "core/error.h"
#include "web/http_server.h"
#include "web/metrics.h"

using namespace engine;
using namespace engine::web;

TEST(Metrics, RendersPrometheusText) {
  Metrics m;
  m.counter("engine_requests_total", "HTTP requests");
  m.gauge("engine_sessions_active", "open sessions");
  m.histogram("engine_token_seconds", "time per token", {0.01, 0.1});
  m.add("engine_requests_total", 1, {{"endpoint", "chat"}});
  m.add("engine_requests_total", 2, {{"endpoint", "chat"}});
  m.set("engine_sessions_active", 4);
  m.observe("engine_token_seconds", 0.005);
  m.observe("engine_token_seconds", 0.05);
  m.observe("engine_token_seconds", 5);
  std::string t = m.render();
  EXPECT_NE(t.find("# TYPE engine_requests_total counter\n"), std::string::npos) << t;
  EXPECT_NE(t.find("engine_requests_total{endpoint=\"chat\"} 3\n"), std::string::npos) << t;
  EXPECT_NE(t.find("engine_sessions_active 4\n"), std::string::npos) << t;
  EXPECT_NE(t.find("engine_token_seconds_bucket{le=\"0.01\"} 1\n"), std::string::npos) << t;
  EXPECT_NE(t.find("engine_token_seconds_bucket{le=\"0.10000000000000001\"} 2\n"), std::string::npos) << t;
  EXPECT_NE(t.find("engine_token_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos) << t;
  EXPECT_NE(t.find("engine_token_seconds_count 3\n"), std::string::npos) << t;
  EXPECT_EQ(m.value("engine_requests_total", {{"endpoint", "chat"}}), 3);
  EXPECT_THROW(m.add("engine_typo_total"), Error);
  EXPECT_THROW(m.observe("engine_sessions_active", 1), Error);
}

TEST(Metrics, EscapesLabelValues) { EXPECT_EQ(prometheus_escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd"); }

TEST(HttpServer, ServesOnAnEphemeralPort) {
  HttpServer s(HttpOptions{"127.0.0.1:0"});
  s.routes().Get("/ping", [](const httplib::Request&, httplib::Response& res) { res.set_content("pong", "text/plain"); });
  s.routes().Get("/boom", [](const httplib::Request&, httplib::Response&) { throw Error("it \"broke\""); });
  s.start();
  ASSERT_GT(s.port(), 0);
  httplib::Client c("127.0.0.1", s.port());
  auto r = c.Get("/ping");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "pong");
  auto b = c.Get("/boom");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->status, 500);
  EXPECT_NE(b->body.find("it \\\"broke\\\""), std::string::npos) << b->body;
  s.stop();
}

TEST(HttpServer, RejectsBadListenAddresses) {
  std::string host;
  int port;
  EXPECT_THROW(parse_listen_address("8080", &host, &port), Error);
  EXPECT_THROW(parse_listen_address("127.0.0.1:99999", &host, &port), Error);
  EXPECT_THROW(parse_listen_address("127.0.0.1:x", &host, &port), Error);
  parse_listen_address("0.0.0.0:8080", &host, &port);
  EXPECT_EQ(host, "0.0.0.0");
  EXPECT_EQ(port, 8080);
}
