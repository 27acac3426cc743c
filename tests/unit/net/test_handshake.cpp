// The handshakes (net/handshake.h) and sealed records (net/secure_frames.h):
// as pure state machines, then through Rpc with honest and dishonest peers.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>

#include "loop_util.h"
#include "net/handshake.h"
#include "net/rpc.h"
#include "net/secure_frames.h"

using namespace engine::net;
using nettest::RawPeer;
using nettest::run_until;

namespace {

SwarmKey key_of(uint8_t b) {
  SwarmKey k;
  k.fill(b);
  return k;
}

int64_t wall_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

TEST(ChannelHandshake, GoodPairAgreesOnKeys) {
  ChannelHandshake d(key_of(1), true), l(key_of(1), false);
  EXPECT_TRUE(l.opening().empty());  // the listener never speaks first
  std::string open = d.opening(), answer, none;
  ASSERT_EQ(open.size(), kPreambleBytes);
  ASSERT_TRUE(l.receive((const uint8_t*)open.data(), &answer));
  ASSERT_EQ(answer.size(), kPreambleBytes);
  ASSERT_TRUE(d.receive((const uint8_t*)answer.data(), &none));
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(d.keys().send, l.keys().recv);
  EXPECT_EQ(d.keys().recv, l.keys().send);
  EXPECT_NE(d.keys().send, d.keys().recv);
  EXPECT_EQ(d.keys().transcript, l.keys().transcript);
}

TEST(ChannelHandshake, WrongKeyGetsNoAnswer) {
  ChannelHandshake d(key_of(1), true), l(key_of(2), false);
  std::string open = d.opening(), answer;
  EXPECT_FALSE(l.receive((const uint8_t*)open.data(), &answer));
  EXPECT_TRUE(answer.empty());
}

TEST(ChannelHandshake, TamperedOrReplayedAnswerFails) {
  ChannelHandshake d1(key_of(1), true), d2(key_of(1), true), l(key_of(1), false);
  std::string open = d1.opening(), answer, none;
  ASSERT_TRUE(l.receive((const uint8_t*)open.data(), &answer));
  // An answer made for d1's opening does not convince d2 (replay).
  EXPECT_FALSE(d2.receive((const uint8_t*)answer.data(), &none));
  std::string bad = answer;
  bad[40] ^= 1;
  EXPECT_FALSE(d1.receive((const uint8_t*)bad.data(), &none));
}

TEST(ChannelHandshake, FlippedBitInOpeningFails) {
  for (size_t i : {0, 40, 95}) {
    ChannelHandshake d(key_of(7), true), l(key_of(7), false);
    std::string open = d.opening(), answer;
    open[i] ^= 0x10;
    EXPECT_FALSE(l.receive((const uint8_t*)open.data(), &answer)) << i;
  }
}

TEST(SealedRecords, RoundTripTamperReplay) {
  ChannelKey k;
  k.fill(3);
  std::string rec(sealed_size(11), '\0');
  seal_record(k, 0, "hello", " ", "world", (uint8_t*)rec.data());
  EXPECT_EQ(rec.find("hello"), std::string::npos);  // encrypted
  FrameReader r;
  r.set_opener(k);
  r.feed(rec.data(), rec.size());
  std::string_view body;
  ASSERT_EQ(r.next(&body), FrameReader::kFrame);
  EXPECT_EQ(body, "hello world");
  // The same record again is a replay: its nonce is now 1.
  r.feed(rec.data(), rec.size());
  EXPECT_EQ(r.next(&body), FrameReader::kError);
  EXPECT_EQ(r.error(), FrameError::kBadSeal);
  // Any flipped bit, header included, fails.
  for (size_t i = 0; i < rec.size(); i += 7) {
    std::string bad = rec;
    bad[i] ^= 1;
    FrameReader r2;
    r2.set_opener(k);
    r2.feed(bad.data(), bad.size());
    EXPECT_EQ(r2.next(&body), FrameReader::kError) << i;
  }
}

TEST(SealedRecords, OversizedLengthRefusedBeforeBody) {
  ChannelKey k{};
  FrameReader r(1 << 20);
  r.set_opener(k);
  const uint8_t huge[4] = {0x40, 0, 0, 0};  // 1 GiB
  r.feed(huge, 4);
  std::string_view body;
  EXPECT_EQ(r.next(&body), FrameReader::kError);
  EXPECT_EQ(r.error(), FrameError::kOversized);
}

// ---- through Rpc ---------------------------------------------------------------

namespace {

struct Secure : ::testing::Test {
  uv_loop_t loop;
  std::unique_ptr<Rpc> server;
  std::vector<std::unique_ptr<Rpc>> clients;
  std::string addr;
  std::vector<std::string> violations;

  void start(std::shared_ptr<const SwarmKey> key) {
    uv_loop_init(&loop);
    RpcOptions o;
    o.swarm_key = std::move(key);
    server = std::make_unique<Rpc>(&loop, o);
    addr = server->listen("127.0.0.1:0");
    server->handle("echo", [](Request& r) { r.respond(pack_object(r.args)); });
    server->on_violation = [this](const std::string&, const std::string& why) { violations.push_back(why); };
  }
  Reply call_with(std::shared_ptr<const SwarmKey> key) {
    RpcOptions o;
    o.swarm_key = std::move(key);
    clients.push_back(std::make_unique<Rpc>(&loop, o));
    Reply got;
    bool done = false;
    clients.back()->call(addr, "echo", empty_map(), 5000, [&](const Reply& r) {
      got.code = r.code, got.message = r.message, got.peer = r.peer, done = true;
    });
    EXPECT_TRUE(run_until(&loop, [&] { return done; }));
    return got;
  }
  bool saw(const std::string& what) {
    for (auto& v : violations)
      if (v.find(what) != std::string::npos) return true;
    return false;
  }
  // Reads the server's hello (open swarm) and returns it.
  Envelope server_hello(RawPeer& p, std::string* raw, msgpack::object_handle* oh) {
    std::string_view body;
    FrameReader r;
    EXPECT_TRUE(run_until(&loop, [&] {
      p.read_some(raw);
      FrameReader probe;
      probe.feed(raw->data(), raw->size());
      return probe.next(&body) == FrameReader::kFrame;
    }));
    r.feed(raw->data(), raw->size());
    r.next(&body);
    *oh = unpack_untrusted(body.data(), body.size());
    return decode_envelope(oh->get());
  }
  void TearDown() override {
    for (auto& c : clients) c->close();
    server->close();
    clients.clear();
    server.reset();
    nettest::drain_loop(&loop);
    EXPECT_EQ(uv_loop_close(&loop), 0);
  }
};

}  // namespace

TEST_F(Secure, SameKeyWorksAndPeersAreProven) {
  auto k = std::make_shared<const SwarmKey>(key_of(5));
  start(k);
  Reply r = call_with(k);
  EXPECT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.peer.id, server->id());
  EXPECT_TRUE(violations.empty());
}

TEST_F(Secure, OpenSwarmStillWorks) {
  start(nullptr);
  Reply r = call_with(nullptr);
  EXPECT_TRUE(r.ok()) << r.message;
  EXPECT_EQ(r.peer.id, server->id());
}

TEST_F(Secure, WrongKeyOrNoKeyIsRefused) {
  start(std::make_shared<const SwarmKey>(key_of(5)));
  Reply wrong = call_with(std::make_shared<const SwarmKey>(key_of(6)));
  EXPECT_FALSE(wrong.ok());
  EXPECT_NE(wrong.message.find("swarm-key"), std::string::npos) << wrong.message;
  Reply none = call_with(nullptr);  // an open-swarm node: its hello is not a key proof
  EXPECT_FALSE(none.ok());
  EXPECT_EQ(server->stats().requests_in, 0u);
}

TEST_F(Secure, KeyedClientRefusesOpenServer) {
  start(nullptr);
  Reply r = call_with(std::make_shared<const SwarmKey>(key_of(5)));
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(server->stats().requests_in, 0u);
}

TEST_F(Secure, KeyedServerAnswersAStrangerNothing) {
  start(std::make_shared<const SwarmKey>(key_of(5)));
  // A plausible open-swarm hello, well over the 96 bytes the server waits for.
  Identity me = Identity::generate();
  Hello h{std::string(me.id().bytes()), kProtocolVersion, "default", "", wall_now_ms(),
          std::string((const char*)me.public_key().data(), 32), std::string(32, 'n')};
  RawPeer p(addr);
  ASSERT_TRUE(p.send(encode_frame(encode_hello(h)) + std::string(64, '\0')));
  std::string got;
  ASSERT_TRUE(run_until(&loop, [&] { return !p.read_some(&got); }));
  EXPECT_EQ(got.size(), 0u);
}

TEST_F(Secure, TamperedRecordClosesConnection) {
  auto k = std::make_shared<const SwarmKey>(key_of(5));
  start(k);
  RawPeer p(addr);
  ChannelHandshake d(*k, true);
  ASSERT_TRUE(p.send(d.opening()));
  std::string got, none;
  ASSERT_TRUE(run_until(&loop, [&] { p.read_some(&got); return got.size() >= kPreambleBytes; }));
  ASSERT_TRUE(d.receive((const uint8_t*)got.data(), &none));
  Identity me = Identity::generate();
  Hello h{std::string(me.id().bytes()), kProtocolVersion, "default", "", wall_now_ms(),
          std::string((const char*)me.public_key().data(), 32), std::string(32, 'n')};
  std::string body = encode_hello(h);
  std::string rec(sealed_size(body.size()), '\0');
  seal_record(d.keys().send, 0, body, {}, {}, (uint8_t*)rec.data());
  rec[10] ^= 1;
  ASSERT_TRUE(p.send(rec));
  EXPECT_TRUE(run_until(&loop, [&] { return p.closed_by_peer(); }));
  EXPECT_TRUE(saw("record failed to authenticate"));
}

TEST_F(Secure, ForgedIdentityRefused) {
  start(nullptr);
  Identity victim = Identity::generate(), me = Identity::generate();
  std::string vpk((const char*)victim.public_key().data(), 32), nonce(32, 'n');
  // 1. Someone else's id and public key, proof signed with our own key.
  {
    RawPeer p(addr);
    std::string raw;
    msgpack::object_handle oh;
    Envelope s = server_hello(p, &raw, &oh);
    Hello h{std::string(victim.id().bytes()), kProtocolVersion, "default", "", wall_now_ms(), vpk, nonce};
    std::string sig = me.sign(auth_transcript(true, "default", nonce, s.hello.nonce, vpk, s.hello.key, ""));
    ASSERT_TRUE(p.send(encode_frame(encode_hello(h)) + encode_frame(encode_auth(sig)) +
                       encode_frame(request_prefix(1, "echo", 5000) + empty_map())));
    EXPECT_TRUE(run_until(&loop, [&] { return p.closed_by_peer(); }));
    EXPECT_TRUE(saw("identity proof failed"));
  }
  // 2. Someone else's id with our own public key.
  {
    RawPeer p(addr);
    std::string raw;
    msgpack::object_handle oh;
    server_hello(p, &raw, &oh);
    std::string mpk((const char*)me.public_key().data(), 32);
    Hello h{std::string(victim.id().bytes()), kProtocolVersion, "default", "", wall_now_ms(), mpk, nonce};
    ASSERT_TRUE(p.send(encode_frame(encode_hello(h))));
    EXPECT_TRUE(run_until(&loop, [&] { return p.closed_by_peer(); }));
    EXPECT_TRUE(saw("does not belong to the public key"));
  }
  EXPECT_EQ(server->stats().requests_in, 0u);
}

TEST_F(Secure, ReplayedProofRefused) {
  start(nullptr);
  Identity me = Identity::generate();
  std::string mpk((const char*)me.public_key().data(), 32), nonce(32, 'n');
  Hello h{std::string(me.id().bytes()), kProtocolVersion, "default", "", wall_now_ms(), mpk, nonce};
  // A valid proof for the first connection, replayed on a second one.
  std::string replay;
  {
    RawPeer p(addr);
    std::string raw;
    msgpack::object_handle oh;
    Envelope s = server_hello(p, &raw, &oh);
    replay = encode_frame(encode_hello(h)) +
             encode_frame(encode_auth(me.sign(auth_transcript(true, "default", nonce, s.hello.nonce, mpk,
                                                              s.hello.key, ""))));
    ASSERT_TRUE(p.send(replay + encode_frame(request_prefix(1, "echo", 5000) + empty_map())));
    ASSERT_TRUE(run_until(&loop, [&] { return server->stats().requests_in == 1; }));
  }
  RawPeer p(addr);
  std::string raw;
  msgpack::object_handle oh;
  server_hello(p, &raw, &oh);
  ASSERT_TRUE(p.send(replay + encode_frame(request_prefix(1, "echo", 5000) + empty_map())));
  EXPECT_TRUE(run_until(&loop, [&] { return p.closed_by_peer(); }));
  EXPECT_TRUE(saw("identity proof failed"));
  EXPECT_EQ(server->stats().requests_in, 1u);
}
