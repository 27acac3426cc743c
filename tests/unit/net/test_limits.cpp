// A hostile or broken peer is cut off (that connection only) while the node
// keeps serving everyone else.
#include <gtest/gtest.h>

#include <chrono>

#include "loop_util.h"
#include "net/handshake.h"
#include "net/rpc.h"

using namespace engine::net;
using nettest::RawPeer;
using nettest::run_until;

namespace {

int64_t wall_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// Plays the dialer's side of the handshake by hand: reads the server's hello
// (running the loop meanwhile) and returns our hello + identity proof frames,
// after which the raw peer may misbehave as it likes.
std::string handshake_frames(uv_loop_t* loop, RawPeer& p) {
  std::string got;
  std::string_view body;
  FrameReader r;
  bool have = nettest::run_until(loop, [&] {
    p.read_some(&got);
    FrameReader fresh;
    fresh.feed(got.data(), got.size());
    if (fresh.next(&body) != FrameReader::kFrame) return false;
    r.feed(got.data(), got.size());
    return true;
  });
  EXPECT_TRUE(have);
  if (!have || r.next(&body) != FrameReader::kFrame) return {};
  auto oh = unpack_untrusted(body.data(), body.size());
  Envelope server = decode_envelope(oh.get());
  Identity me = Identity::generate();
  std::string pk((const char*)me.public_key().data(), kPublicKeyBytes), nonce(kNonceBytes, 'n');
  Hello h{std::string(me.id().bytes()), kProtocolVersion, "default", "", wall_now_ms(), pk, nonce};
  std::string sig = me.sign(auth_transcript(true, "default", nonce, server.hello.nonce, pk, server.hello.key, ""));
  return encode_frame(encode_hello(h)) + encode_frame(encode_auth(sig));
}

std::string request_frame(uint64_t id, std::string_view method = "echo") {
  return encode_frame(request_prefix(id, method, 5000) + empty_map());
}

struct Hostile : ::testing::Test {
  uv_loop_t loop;
  std::unique_ptr<Rpc> server, client;
  std::string addr;
  std::vector<std::string> violations;
  Limits limits;

  void start() {
    uv_loop_init(&loop);
    RpcOptions o;
    o.limits = limits;
    server = std::make_unique<Rpc>(&loop, o);
    client = std::make_unique<Rpc>(&loop);
    addr = server->listen("127.0.0.1:0");
    server->handle("echo", [](Request& r) { r.respond(pack_object(r.args)); });
    server->on_violation = [this](const std::string&, const std::string& why) { violations.push_back(why); };
  }
  void TearDown() override {
    client->close();
    server->close();
    client.reset();
    server.reset();
    nettest::drain_loop(&loop);
    EXPECT_EQ(uv_loop_close(&loop), 0);
  }
  // A well-behaved peer still gets answers.
  bool others_served() {
    bool done = false, ok = false;
    client->call(addr, "echo", empty_map(), 5000, [&](const Reply& r) { ok = r.ok(), done = true; });
    return run_until(&loop, [&] { return done; }) && ok;
  }
  bool cut_off(RawPeer& p, int timeout_ms = 5000) {
    return run_until(&loop, [&] { return p.closed_by_peer(); }, timeout_ms);
  }
  bool saw(const std::string& what) {
    for (auto& v : violations)
      if (v.find(what) != std::string::npos) return true;
    return false;
  }
};

}  // namespace

TEST_F(Hostile, GarbageBytes) {
  start();
  RawPeer p(addr);
  ASSERT_TRUE(p.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_TRUE(cut_off(p));
  EXPECT_TRUE(others_served());
}

TEST_F(Hostile, OversizedFrameRefusedFromHeader) {
  limits.max_frame = 1 << 20;
  start();
  RawPeer p(addr);
  std::string f = encode_frame(std::string(16, 'x'));
  f[8] = 0x40;  // claims a 1 GiB body; we never wait for it
  ASSERT_TRUE(p.send(handshake_frames(&loop, p) + f.substr(0, kFrameHeaderSize)));
  EXPECT_TRUE(cut_off(p));
  EXPECT_TRUE(others_served());
}

TEST_F(Hostile, BadChecksumWrongVersionGarbageMsgpack) {
  start();
  std::string bad_sum = request_frame(1);
  bad_sum.back() ^= 1;
  std::string bad_version = request_frame(1);
  bad_version[5] = 9;
  std::string garbage = encode_frame("\xc1\xc1\xc1");
  std::string wrong_types = encode_frame(request_prefix(1, "echo", 5000));  // no body value
  for (const std::string& f : {bad_sum, bad_version, garbage, wrong_types}) {
    RawPeer p(addr);
    ASSERT_TRUE(p.send(handshake_frames(&loop, p) + f));
    EXPECT_TRUE(cut_off(p));
  }
  EXPECT_TRUE(others_served());
  EXPECT_GE(server->stats().violations, 2u);  // the two that passed framing
}

TEST_F(Hostile, RequestBeforeHello) {
  start();
  RawPeer p(addr);
  ASSERT_TRUE(p.send(request_frame(1)));
  EXPECT_TRUE(cut_off(p));
  EXPECT_TRUE(saw("expected hello"));
  EXPECT_TRUE(others_served());
}

TEST_F(Hostile, RequestFloodIsCutOff) {
  limits.max_requests_per_s = 100;
  limits.request_burst = 200;
  start();
  RawPeer p(addr);
  std::string flood = handshake_frames(&loop, p);
  for (int i = 1; i <= 3000; i++) flood += request_frame(i);
  p.send(flood);
  EXPECT_TRUE(cut_off(p));
  EXPECT_TRUE(saw("request flood"));
  EXPECT_TRUE(others_served());
}

TEST_F(Hostile, TooManyRequestsInFlight) {
  limits.max_inflight = 8;
  start();
  int parked = 0;
  server->handle("park", [&](Request&) { parked++; });
  RawPeer p(addr);
  std::string s = handshake_frames(&loop, p);
  for (int i = 1; i <= 9; i++) s += request_frame(i, "park");
  p.send(s);
  EXPECT_TRUE(cut_off(p));
  EXPECT_EQ(parked, 8);
  EXPECT_TRUE(saw("in flight"));
  EXPECT_TRUE(others_served());
}

TEST_F(Hostile, DuplicateRequestId) {
  start();
  server->handle("park", [](Request&) {});
  RawPeer p(addr);
  p.send(handshake_frames(&loop, p) + request_frame(5, "park") + request_frame(5, "park"));
  EXPECT_TRUE(cut_off(p));
  EXPECT_TRUE(saw("duplicate request id"));
}

TEST_F(Hostile, ConnectionsPerAddress) {
  limits.max_conns_per_ip = 2;
  start();
  RawPeer a(addr), b(addr);
  ASSERT_TRUE(run_until(&loop, [&] { return server->connection_count() == 2; }));
  RawPeer c(addr);
  EXPECT_TRUE(cut_off(c));
  EXPECT_GE(server->stats().conns_refused, 1u);
  EXPECT_FALSE(a.closed_by_peer());
  ::shutdown(a.fd, SHUT_RDWR);
  ::shutdown(b.fd, SHUT_RDWR);
  ASSERT_TRUE(run_until(&loop, [&] { return server->connection_count() == 0; }));
  EXPECT_TRUE(others_served());
}

TEST_F(Hostile, SilentPeerHitsHandshakeTimeout) {
  limits.handshake_timeout_ms = 200;
  start();
  RawPeer p(addr);
  EXPECT_TRUE(cut_off(p));
  EXPECT_TRUE(others_served());
}

TEST_F(Hostile, IdleConnectionsAreClosed) {
  limits.idle_timeout_ms = 300;
  start();
  EXPECT_TRUE(others_served());
  EXPECT_EQ(server->connection_count(), 1u);
  EXPECT_TRUE(run_until(&loop, [&] { return server->connection_count() == 0 && client->connection_count() == 0; }));
  EXPECT_TRUE(others_served());  // a new connection is made on demand
}

TEST_F(Hostile, SlowReaderDoesNotGrowOurBuffers) {
  limits.soft_write_queue = 2 << 20;
  limits.hard_write_queue = 64 << 20;
  limits.max_inflight = 1000;
  start();
  int handled = 0;
  server->handle("big", [&](Request& r) {
    handled++;
    Buf b;
    Packer pk(b);
    pack_bin(pk, std::string(1 << 20, 'x'));
    r.respond(std::move(b.s));
  });
  RawPeer p(addr);
  int rcv = 4096;
  setsockopt(p.fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);  // a reader that barely reads
  std::string s = handshake_frames(&loop, p);
  for (int i = 1; i <= 200; i++) s += request_frame(i, "big");  // 200 MiB of replies asked for
  ASSERT_TRUE(p.send(s));
  size_t peak = 0;
  run_until(&loop, [&] {
    peak = std::max(peak, server->queued_bytes());
    return false;
  }, 1000);
  EXPECT_LT(handled, 200);
  EXPECT_LE(peak, (size_t)(2 << 20) + (2 << 20));  // soft limit plus the reply that crossed it
  EXPECT_TRUE(others_served());                     // the node kept serving others meanwhile
}
