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
std::string handshake_frames(uv_loop_t* loop, RawPeer& p, const Identity* who = nullptr) {
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
  const Identity fresh = Identity::generate();
  const Identity& me = who ? *who : fresh;
  std::string pk((const char*)me.public_key().data(), kPublicKeyBytes), nonce(kNonceBytes, 'n');
  Hello h{std::string(me.id().bytes()), kProtocolVersion, "default", "", wall_now_ms(), pk, nonce};
  std::string sig = me.sign(auth_transcript(true, "default", nonce, server.hello.nonce, pk, server.hello.key, ""));
  return encode_frame(encode_hello(h)) + encode_frame(encode_auth(sig));
}

// The first bytes of a well-formed hello (for a peer that trickles it).
std::string hello_prefix() {
  Identity me = Identity::generate();
  std::string pk((const char*)me.public_key().data(), kPublicKeyBytes), nonce(kNonceBytes, 'n');
  Hello h{std::string(me.id().bytes()), kProtocolVersion, "default", "", wall_now_ms(), pk, nonce};
  return encode_frame(encode_hello(h)).substr(0, 10);
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

  // Most tests play the attacker from 127.0.0.1, the honest client's address
  // too, so backoff is off unless a test turns it on (and attacks from 127.0.0.2).
  Hostile() { limits.backoff_base_ms = 0; }

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

TEST(PeerBackoff, DoublesUpToTheCapAndDecays) {
  PeerBackoff b({1000, 8000, 60000, 100});
  EXPECT_EQ(b.refused_for("ip:a", 0), 0u);
  EXPECT_EQ(b.punish("ip:a", 0), 1000u);
  EXPECT_EQ(b.refused_for("ip:a", 400), 600u);
  EXPECT_EQ(b.refused_for("ip:b", 400), 0u);  // keys are separate
  EXPECT_EQ(b.punish("ip:a", 1000), 2000u);
  EXPECT_EQ(b.punish("ip:a", 3000), 4000u);
  EXPECT_EQ(b.punish("ip:a", 7000), 8000u);
  EXPECT_EQ(b.punish("ip:a", 15000), 8000u);  // capped
  EXPECT_EQ(b.refused_for("ip:a", 23000), 0u);
  // Two decay periods of quiet after the refusal forgive two doublings: 8 s -> 2 s.
  EXPECT_EQ(b.punish("ip:a", 23000 + 120000), 2000u);
  // Long quiet forgets the key entirely.
  b.forget_old(10000000);
  EXPECT_EQ(b.size(), 0u);
  EXPECT_EQ(b.punish("ip:a", 10000000), 1000u);
}

TEST(PeerBackoff, OffWhenBaseIsZeroAndBoundedInSize) {
  PeerBackoff off({0, 8000, 60000, 100});
  EXPECT_EQ(off.punish("ip:a", 0), 0u);
  EXPECT_EQ(off.refused_for("ip:a", 0), 0u);
  PeerBackoff b({1000, 8000, 60000, 4});
  for (int i = 0; i < 50; i++) b.punish("ip:" + std::to_string(i), (uint64_t)i);
  EXPECT_LE(b.size(), 4u);
  EXPECT_GT(b.refused_for("ip:49", 49), 0u);  // the newest offender is kept
}

// A peer cut off for garbage is refused at accept for a while, by IP; the
// honest client at another address is not affected.
TEST_F(Hostile, ViolatorsAddressIsBackedOff) {
  limits.backoff_base_ms = 60000;  // long enough never to run out during the test
  start();
  RawPeer p(addr, "127.0.0.2");
  ASSERT_GE(p.fd, 0);
  ASSERT_TRUE(p.send("garbage that is not a frame header"));
  EXPECT_TRUE(cut_off(p));
  EXPECT_GT(server->backed_off_ms("127.0.0.2"), 0u);
  EXPECT_EQ(server->backed_off_ms("127.0.0.1"), 0u);
  uint64_t violations_before = server->stats().violations;
  RawPeer again(addr, "127.0.0.2");
  EXPECT_TRUE(cut_off(again));  // closed at once, before any hello
  EXPECT_GE(server->stats().backed_off, 1u);
  EXPECT_EQ(server->stats().violations, violations_before);  // a refusal is not a new offence
  EXPECT_TRUE(others_served());
}

// Ids are backed off too: the same id from another address is refused at hello.
TEST_F(Hostile, ViolatorsIdIsBackedOff) {
  limits.backoff_base_ms = 60000;
  start();
  const Identity id = Identity::generate();
  {
    RawPeer p(addr, "127.0.0.3");
    ASSERT_GE(p.fd, 0);
    ASSERT_TRUE(p.send(handshake_frames(&loop, p, &id) + encode_frame("\xc1")));  // bad msgpack after hello
    EXPECT_TRUE(cut_off(p));
  }
  RawPeer q(addr, "127.0.0.4");
  ASSERT_GE(q.fd, 0);
  ASSERT_TRUE(q.send(handshake_frames(&loop, q, &id)));
  EXPECT_TRUE(cut_off(q));
  EXPECT_TRUE(saw("backed off"));
  RawPeer fresh(addr, "127.0.0.4");  // that address did nothing wrong
  ASSERT_TRUE(fresh.send(handshake_frames(&loop, fresh)));
  run_until(&loop, [] { return false; }, 300);
  EXPECT_FALSE(fresh.closed_by_peer());
}

// Slow-loris: a frame whose header came but whose body never completes.
TEST_F(Hostile, UnfinishedFrameIsCutOff) {
  limits.frame_timeout_ms = 300;
  limits.backoff_base_ms = 60000;
  start();
  RawPeer p(addr, "127.0.0.5");
  ASSERT_GE(p.fd, 0);
  std::string f = request_frame(1);
  ASSERT_TRUE(p.send(handshake_frames(&loop, p) + f.substr(0, f.size() - 3)));  // all but the last 3 bytes
  EXPECT_TRUE(cut_off(p));
  EXPECT_TRUE(saw("frame not completed"));
  EXPECT_GT(server->backed_off_ms("127.0.0.5"), 0u);
  EXPECT_TRUE(others_served());
}

// A frame trickled a byte at a time makes progress on the socket but not on
// the frame: the frame's deadline still applies.
TEST_F(Hostile, TrickledFrameIsCutOff) {
  limits.frame_timeout_ms = 300;
  start();
  RawPeer p(addr);
  ASSERT_TRUE(p.send(handshake_frames(&loop, p)));
  std::string f = request_frame(1);
  bool cut = false;
  for (size_t i = 0; i < f.size() && !cut; i++) {
    p.send(f.substr(i, 1));
    cut = run_until(&loop, [&] { return p.closed_by_peer(); }, 100);
  }
  EXPECT_TRUE(cut || cut_off(p));
  EXPECT_TRUE(saw("frame not completed"));
}

// A hello trickled too slowly to finish within the handshake timeout is an
// offence; plain silence is only closed.
TEST_F(Hostile, TrickledHelloIsBackedOffSilenceIsNot) {
  limits.handshake_timeout_ms = 200;
  limits.backoff_base_ms = 60000;
  start();
  RawPeer silent(addr, "127.0.0.6"), trickler(addr, "127.0.0.7");
  ASSERT_GE(silent.fd, 0);
  ASSERT_GE(trickler.fd, 0);
  ASSERT_TRUE(trickler.send(hello_prefix()));
  EXPECT_TRUE(cut_off(silent));
  EXPECT_TRUE(cut_off(trickler));
  EXPECT_EQ(server->backed_off_ms("127.0.0.6"), 0u);
  EXPECT_GT(server->backed_off_ms("127.0.0.7"), 0u);
}

// Unfinished frames are what a peer makes us buffer: capped per IP and in all.
TEST_F(Hostile, UnfinishedFrameBytesAreCappedPerAddressAndInAll) {
  limits.max_frame = 4 << 20;
  limits.max_pending_per_ip = 1 << 20;
  limits.max_pending_total = 3 << 19;  // 1.5 MiB
  start();
  const std::string frame = encode_frame(std::string(600 << 10, 'x'));
  const std::string part = frame.substr(0, 1000);  // the header and a little
  RawPeer a(addr, "127.0.0.8"), b(addr, "127.0.0.8"), c(addr, "127.0.0.9"), d(addr, "127.0.0.10");
  ASSERT_TRUE(a.fd >= 0 && b.fd >= 0 && c.fd >= 0 && d.fd >= 0);
  ASSERT_TRUE(a.send(part));
  ASSERT_TRUE(run_until(&loop, [&] { return server->pending_bytes() == (600u << 10); }));
  ASSERT_TRUE(b.send(part));  // the same address: 1.2 MiB > 1 MiB
  EXPECT_TRUE(cut_off(b));
  EXPECT_TRUE(saw("unfinished frames from your address"));
  ASSERT_TRUE(c.send(part));  // another address: 1.2 MiB in all, fits
  ASSERT_TRUE(run_until(&loop, [&] { return server->pending_bytes() == (1200u << 10); }));
  ASSERT_TRUE(d.send(part));  // a third: 1.8 MiB in all > 1.5 MiB
  EXPECT_TRUE(cut_off(d));
  EXPECT_TRUE(saw("server busy"));
  EXPECT_FALSE(a.closed_by_peer());
  EXPECT_FALSE(c.closed_by_peer());
  ::shutdown(a.fd, SHUT_RDWR);
  ::shutdown(c.fd, SHUT_RDWR);
  EXPECT_TRUE(run_until(&loop, [&] { return server->pending_bytes() == 0; }));  // returned on close
  EXPECT_TRUE(others_served());
}

// A large frame that completes gives its reservation back.
TEST_F(Hostile, FinishedFramesReturnTheirReservation) {
  limits.max_frame = 4 << 20;
  start();
  Buf x;
  Packer pk(x);
  pack_bin(pk, std::string(600 << 10, 'x'));
  std::string f = encode_frame(request_prefix(1, "echo", 5000) + x.s);
  RawPeer p(addr);
  ASSERT_TRUE(p.send(handshake_frames(&loop, p) + f.substr(0, 1000)));
  ASSERT_TRUE(run_until(&loop, [&] { return server->pending_bytes() > 0; }));
  ASSERT_TRUE(p.send(f.substr(1000)));
  EXPECT_TRUE(run_until(&loop, [&] { return server->pending_bytes() == 0 && server->stats().requests_in == 1; }));
  EXPECT_FALSE(p.closed_by_peer());
}

// Every local process shares 127.0.0.1: one offender there must not lock the others out.
TEST_F(Hostile, LoopbackAddressIsNeverBackedOff) {
  limits.backoff_base_ms = 60000;
  start();
  RawPeer p(addr);
  ASSERT_TRUE(p.send("garbage that is not a frame header"));
  EXPECT_TRUE(cut_off(p));
  EXPECT_EQ(server->backed_off_ms("127.0.0.1"), 0u);
  EXPECT_TRUE(others_served());
}
