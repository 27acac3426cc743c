// RPC over real TCP on 127.0.0.1: two nodes on one loop, plus raw sockets
// playing broken and hostile peers.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "loop_util.h"
#include "net/rpc.h"

using namespace engine::net;
using nettest::run_until;

namespace {

std::string pack_str_value(std::string_view s) {
  Buf b;
  Packer pk(b);
  pack_str(pk, s);
  return b.s;
}

struct TwoNodes : ::testing::Test {
  uv_loop_t loop;
  std::unique_ptr<Rpc> server, client;
  std::string addr;
  void SetUp() override {
    uv_loop_init(&loop);
    server = std::make_unique<Rpc>(&loop, opts());
    client = std::make_unique<Rpc>(&loop, opts());
    addr = server->listen("127.0.0.1:0");
    server->handle("echo", [](Request& r) { r.respond(pack_object(r.args)); });
  }
  virtual RpcOptions opts() { return RpcOptions{}; }
  void TearDown() override {
    client->close();
    server->close();
    client.reset();
    server.reset();
    nettest::drain_loop(&loop);
    EXPECT_EQ(uv_loop_close(&loop), 0);
  }
  Reply call_sync(const std::string& method, std::string args, uint32_t timeout_ms = 5000,
                  std::string* result_text = nullptr, const std::string& to = "") {
    Reply out;
    bool done = false;
    client->call(to.empty() ? addr : to, method, std::move(args), timeout_ms, [&](const Reply& r) {
      out.code = r.code;
      out.message = r.message;
      out.peer = r.peer;
      if (r.result && result_text) *result_text = object_to_text(*r.result);
      done = true;
    });
    EXPECT_TRUE(run_until(&loop, [&] { return done; }));
    return out;
  }
};

}  // namespace

TEST_F(TwoNodes, EchoAndPeerIdentity) {
  std::string text;
  Reply r = call_sync("echo", pack_str_value("hi there"), 5000, &text);
  ASSERT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(text, "\"hi there\"");
  EXPECT_EQ(r.peer.id, server->id());
  EXPECT_EQ(r.peer.listen, addr);
}

TEST_F(TwoNodes, ConnectionIsReused) {
  int done = 0;
  for (int i = 0; i < 50; i++)
    client->call(addr, "echo", empty_map(), 5000, [&](const Reply& r) { done += r.ok(); });
  ASSERT_TRUE(run_until(&loop, [&] { return done == 50; }));
  EXPECT_EQ(client->connection_count(), 1u);
  EXPECT_EQ(server->connection_count(), 1u);
}

TEST_F(TwoNodes, ServerCallsBackOverTheIncomingConnection) {
  client->listen("127.0.0.1:0");
  client->handle("whoami", [](Request& r) { r.respond(pack_str_value("client")); });
  ASSERT_TRUE(call_sync("echo", empty_map()).ok());
  bool done = false;
  std::string text;
  server->call(client->address(), "whoami", empty_map(), 5000, [&](const Reply& r) {
    EXPECT_TRUE(r.ok()) << r.message;
    if (r.result) text = object_to_text(*r.result);
    done = true;
  });
  ASSERT_TRUE(run_until(&loop, [&] { return done; }));
  EXPECT_EQ(text, "\"client\"");
  EXPECT_EQ(server->connection_count(), 1u);  // no second connection was opened
}

TEST_F(TwoNodes, ErrorReplies) {
  server->handle("bad", [](Request& r) { as_uint(need_field(r.args, "n"), "n"); });
  server->handle("boom", [](Request&) { throw std::runtime_error("kaput"); });
  server->handle("notfound", [](Request& r) { r.fail(ErrorCode::kNotFound, "no such thing"); });
  Reply r = call_sync("nope", empty_map());
  EXPECT_EQ(r.code, ErrorCode::kUnknownMethod);
  r = call_sync("bad", empty_map());
  EXPECT_EQ(r.code, ErrorCode::kBadRequest);
  EXPECT_NE(r.message.find("missing field 'n'"), std::string::npos) << r.message;
  r = call_sync("boom", empty_map());
  EXPECT_EQ(r.code, ErrorCode::kInternal);
  EXPECT_EQ(r.message, "kaput");
  r = call_sync("notfound", empty_map());
  EXPECT_EQ(r.code, ErrorCode::kNotFound);
  // The connection survived all of them.
  EXPECT_TRUE(call_sync("echo", empty_map()).ok());
  EXPECT_EQ(server->stats().violations, 0u);
}

TEST_F(TwoNodes, DeadlineExceededAndLateReplyDropped) {
  std::vector<Responder> parked;
  server->handle("slow", [&](Request& r) { parked.push_back(r.responder); });
  Reply r = call_sync("slow", empty_map(), 100);
  EXPECT_EQ(r.code, ErrorCode::kDeadlineExceeded);
  // The caller's cancel reaches the server: the responder is dead.
  ASSERT_TRUE(run_until(&loop, [&] { return !parked.empty() && !parked[0].alive(); }));
  EXPECT_FALSE(parked[0].respond(empty_map()));
  EXPECT_TRUE(call_sync("echo", empty_map()).ok());
}

TEST_F(TwoNodes, AsyncResponder) {
  Responder later;
  server->handle("later", [&](Request& r) { later = r.responder; });
  bool done = false;
  std::string text;
  client->call(addr, "later", empty_map(), 5000, [&](const Reply& r) {
    if (r.result) text = object_to_text(*r.result);
    done = true;
  });
  ASSERT_TRUE(run_until(&loop, [&] { return later.alive(); }));
  EXPECT_TRUE(later.respond(pack_str_value("ok")));
  EXPECT_FALSE(later.respond(pack_str_value("twice")));
  ASSERT_TRUE(run_until(&loop, [&] { return done; }));
  EXPECT_EQ(text, "\"ok\"");
}

TEST_F(TwoNodes, ConnectionRefused) {
  // A port nobody listens on: bind one, close it.
  Rpc tmp(&loop);
  std::string dead = tmp.listen("127.0.0.1:0");
  tmp.close();
  run_until(&loop, [] { return false; }, 50);
  Reply r = call_sync("echo", empty_map(), 5000, nullptr, dead);
  EXPECT_EQ(r.code, ErrorCode::kUnavailable);
  EXPECT_NE(r.message.find("connect"), std::string::npos) << r.message;
  r = call_sync("echo", empty_map(), 5000, nullptr, "not an address");
  EXPECT_EQ(r.code, ErrorCode::kUnavailable);
}

TEST_F(TwoNodes, StreamsBothWays) {
  // The server streams 16 tensor parts of 256 KiB, then the final reply.
  server->handle("pull", [](Request& r) {
    std::vector<float> chunk(65536);
    for (int i = 0; i < 16; i++) {
      for (auto& x : chunk) x = (float)i;
      Buf b;
      Packer pk(b);
      pack_tensor(pk, engine::DType::F32, {256, 256}, chunk.data(), chunk.size() * 4);
      r.responder.send_part(std::move(b.s), i == 15);
    }
    r.respond(pack_str_value("done"));
  });
  int parts = 0;
  bool in_order = true, ended = false, done = false;
  client->call(addr, "pull", empty_map(), 10000, [&](const Reply& r) { done = r.ok(); },
               [&](const msgpack::object& o, bool end) {
                 TensorView t = unpack_tensor(o);
                 in_order &= ((const float*)t.data.data())[123] == (float)parts;
                 parts++;
                 ended = end;
               });
  ASSERT_TRUE(run_until(&loop, [&] { return done; }));
  EXPECT_EQ(parts, 16);
  EXPECT_TRUE(in_order);
  EXPECT_TRUE(ended);

  // The client streams parts to a handler that sums them.
  server->handle("push", [](Request& r) {
    auto total = std::make_shared<uint64_t>(0);
    Responder resp = r.responder;
    r.on_part = [total, resp](const msgpack::object& o, bool end) mutable {
      *total += as_uint(o, "part");
      if (end) {
        Buf b;
        Packer pk(b);
        pk.pack_uint64(*total);
        resp.respond(std::move(b.s));
      }
    };
  });
  std::string text;
  done = false;
  uint64_t id = client->call(addr, "push", empty_map(), 5000, [&](const Reply& r) {
    if (r.result) text = object_to_text(*r.result);
    done = true;
  });
  for (int i = 1; i <= 10; i++) {
    Buf b;
    Packer pk(b);
    pk.pack_uint64(i);
    EXPECT_TRUE(client->send_part(id, std::move(b.s), i == 10));
  }
  ASSERT_TRUE(run_until(&loop, [&] { return done; }));
  EXPECT_EQ(text, "55");
}

TEST_F(TwoNodes, OneWayMessages) {
  std::string got;
  NodeId from;
  server->on_notify("note", [&](const msgpack::object& o, const PeerInfo& p) {
    got = std::string(as_str(o, "note"));
    from = p.id;
  });
  EXPECT_TRUE(client->notify(addr, "note", pack_str_value("fire and forget")));
  ASSERT_TRUE(run_until(&loop, [&] { return !got.empty(); }));
  EXPECT_EQ(got, "fire and forget");
  EXPECT_EQ(from, client->id());
}

TEST_F(TwoNodes, CancelEndsCall) {
  server->handle("slow", [](Request&) {});
  ErrorCode code = ErrorCode::kOk;
  uint64_t id = client->call(addr, "slow", empty_map(), 5000, [&](const Reply& r) { code = r.code; });
  client->cancel(id);
  EXPECT_EQ(code, ErrorCode::kCancelled);
}

TEST(RpcHandshake, SwarmMismatchAndClockSkewAreRejected) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    RpcOptions so;
    so.swarm = "alpha";
    Rpc server(&loop, so);
    std::string addr = server.listen("127.0.0.1:0");
    server.handle("echo", [](Request& r) { r.respond(empty_map()); });

    RpcOptions other;
    other.swarm = "beta";
    Rpc stranger(&loop, other);
    RpcOptions skewed = so;
    skewed.identity = nullptr;  // its own key pair, so its own id
    skewed.clock_offset_ms = 60000;
    Rpc late(&loop, skewed);
    RpcOptions good = so;
    good.identity = nullptr;
    Rpc friendly(&loop, good);

    Reply a, b, c;
    int n = 0;
    stranger.call(addr, "echo", empty_map(), 5000, [&](const Reply& r) { a = r, a.result = nullptr, n++; });
    late.call(addr, "echo", empty_map(), 5000, [&](const Reply& r) { b = r, b.result = nullptr, n++; });
    friendly.call(addr, "echo", empty_map(), 5000, [&](const Reply& r) { c = r, c.result = nullptr, n++; });
    ASSERT_TRUE(run_until(&loop, [&] { return n == 3; }));
    EXPECT_EQ(a.code, ErrorCode::kRejected);
    EXPECT_NE(a.message.find("swarm mismatch"), std::string::npos) << a.message;
    EXPECT_EQ(b.code, ErrorCode::kRejected);
    EXPECT_NE(b.message.find("clocks differ"), std::string::npos) << b.message;
    EXPECT_TRUE(c.ok()) << c.message;
    server.close();
    stranger.close();
    late.close();
    friendly.close();
  }
  nettest::drain_loop(&loop);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(RpcAddress, Ipv6Loopback) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  {
    Rpc server(&loop), client(&loop);
    std::string addr;
    try {
      addr = server.listen("[::1]:0");
    } catch (const engine::Error&) {
      server.close();
      client.close();
      nettest::drain_loop(&loop);
      uv_loop_close(&loop);
      GTEST_SKIP() << "no IPv6 loopback here";
    }
    EXPECT_EQ(addr.substr(0, 5), "[::1]");
    server.handle("echo", [](Request& r) { r.respond(empty_map()); });
    bool ok = false, done = false;
    client.call(addr, "echo", empty_map(), 5000, [&](const Reply& r) { ok = r.ok(), done = true; });
    ASSERT_TRUE(run_until(&loop, [&] { return done; }));
    EXPECT_TRUE(ok);
    server.close();
    client.close();
  }
  nettest::drain_loop(&loop);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

TEST(Address, Parsing) {
  EXPECT_EQ(Address::parse("127.0.0.1:80").to_string(), "127.0.0.1:80");
  EXPECT_EQ(Address::parse("[::1]:5000").to_string(), "[::1]:5000");
  EXPECT_EQ(Address::parse("0.0.0.0:0").port(), 0);
  EXPECT_TRUE(Address::parse("0.0.0.0:1").is_unspecified());
  EXPECT_TRUE(Address::parse("[::]:1").is_unspecified());
  EXPECT_THROW(Address::parse("127.0.0.1"), engine::Error);
  EXPECT_THROW(Address::parse("127.0.0.1:99999"), engine::Error);
  EXPECT_THROW(Address::parse("127.0.0.1:8o"), engine::Error);
  EXPECT_THROW(Address::parse("::1:80"), engine::Error);
  EXPECT_THROW(Address::parse("[::1]80"), engine::Error);
  EXPECT_THROW(Address::parse(":80"), engine::Error);
  EXPECT_THROW(Address::parse("example.invalid:80", false), engine::Error);
  EXPECT_EQ(split_list("a:1, b:2,,c:3"), (std::vector<std::string>{"a:1", "b:2", "c:3"}));
}
