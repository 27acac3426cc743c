// train.state on loopback: a 20 MB state in parts under a small write queue,
// and every way a download must fail: wrong checksum, wrong size, parts out of
// order, a state too old, too many bytes, the server vanishing mid-transfer.
#include <gtest/gtest.h>

#include <xxhash.h>

#include <cstring>
#include <random>

#include "loop_peers.h"
#include "train/state_transfer.h"

using namespace engine;
using namespace engine::train;
using engine::net::Rpc;
using engine::net::RpcOptions;

namespace {

std::shared_ptr<const std::string> random_bytes(size_t n) {
  std::string s(n, '\0');
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
  }
  return std::make_shared<const std::string>(std::move(s));
}

std::string part(uint64_t offset, std::string_view data) {
  net::Buf b;
  net::Packer pk(b);
  pk.pack_map(2);
  net::pack_str(pk, "offset");
  pk.pack_uint64(offset);
  net::pack_str(pk, "data");
  net::pack_bin(pk, data);
  return b.s;
}

std::string result(int64_t epoch, uint64_t size, uint64_t xxh3) {
  net::Buf b;
  net::Packer pk(b);
  pk.pack_map(3);
  net::pack_str(pk, "epoch");
  pk.pack_int64(epoch);
  net::pack_str(pk, "size");
  pk.pack_uint64(size);
  net::pack_str(pk, "xxh3");
  pk.pack_uint64(xxh3);
  return b.s;
}

uint64_t xxh3(std::string_view s) { return XXH3_64bits(s.data(), s.size()); }

struct State : traintest::LoopPeers {
  std::unique_ptr<StateServer> server;
  void release_users() override { server.reset(); }

  // Peer 0 serves, peer 1 downloads (no DHT needed: plain Rpcs).
  void two_peers(net::Limits server_limits = {}) {
    RpcOptions ro;
    ro.limits = server_limits;
    rpcs.push_back(std::make_unique<Rpc>(&loop, ro));
    rpcs.back()->listen("127.0.0.1:0");
    rpcs.push_back(std::make_unique<Rpc>(&loop));
  }
  void TearDown() override {
    release_users();
    for (auto& r : rpcs) r->close();
    rpcs.clear();
    nettest::drain_loop(&loop);
    EXPECT_EQ(uv_loop_close(&loop), 0);
  }
  DownloadResult download(int64_t min_epoch, uint64_t max_bytes = 1ull << 30, uint32_t timeout_ms = 10000) {
    DownloadResult out;
    bool done = false;
    download_state(*rpcs[1], rpcs[0]->address(), min_epoch, timeout_ms, max_bytes, [&](DownloadResult r) {
      EXPECT_FALSE(done) << "done called twice";
      out = std::move(r);
      done = true;
    });
    EXPECT_TRUE(run_until([&] { return done; }, 15000));
    return out;
  }
};

}  // namespace

TEST_F(State, TwentyMegabytesInPartsUnderASmallWriteQueue) {
  net::Limits L;
  L.soft_write_queue = 1u << 20;  // the server must pace itself: 20 MB is 20x this
  L.hard_write_queue = 3u << 20;  // and exceeding this would cut the connection
  two_peers(L);
  auto bytes = random_bytes(20u << 20);
  int snapshots = 0;
  server = std::make_unique<StateServer>(*rpcs[0], [&] {
    snapshots++;
    return StateSnapshot{7, bytes};
  }, 512u << 10);
  DownloadResult r = download(5);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.epoch, 7);
  EXPECT_EQ(r.bytes.size(), bytes->size());
  EXPECT_TRUE(r.bytes == *bytes);
  EXPECT_EQ(snapshots, 1);
  EXPECT_EQ(rpcs[0]->stats().violations, 0u);
}

TEST_F(State, ConcurrentUploadsAreBounded) {
  net::Limits L;
  L.soft_write_queue = 1u << 20;  // the first upload cannot finish in one go
  two_peers(L);
  rpcs.push_back(std::make_unique<Rpc>(&loop));
  auto bytes = random_bytes(20u << 20);
  server = std::make_unique<StateServer>(*rpcs[0], [&] { return StateSnapshot{1, bytes}; }, 1u << 20, 1);
  std::vector<DownloadResult> out(2);
  int done = 0;
  for (size_t i = 0; i < 2; i++)
    download_state(*rpcs[1 + i], rpcs[0]->address(), 0, 10000, 1ull << 30, [&, i](DownloadResult r) {
      out[i] = std::move(r);
      done++;
    });
  ASSERT_TRUE(run_until([&] { return done == 2; }, 15000));
  EXPECT_NE(out[0].ok, out[1].ok);
  const DownloadResult& refused = out[0].ok ? out[1] : out[0];
  EXPECT_NE(refused.error.find("too many state downloads"), std::string::npos) << refused.error;
  // Once the first is over, the slot is free again.
  DownloadResult r = download(0);
  EXPECT_TRUE(r.ok) << r.error;
}

TEST_F(State, NothingToOfferAndTooOld) {
  two_peers();
  StateSnapshot snap;
  server = std::make_unique<StateServer>(*rpcs[0], [&] { return snap; });
  DownloadResult r = download(0);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("no training state"), std::string::npos) << r.error;
  snap = StateSnapshot{3, random_bytes(1000)};
  r = download(5);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("older than min_epoch"), std::string::npos) << r.error;
  r = download(3);
  EXPECT_TRUE(r.ok) << r.error;
}

TEST_F(State, MaxBytesBoundsWhatWeHold) {
  two_peers();
  server = std::make_unique<StateServer>(*rpcs[0], [] { return StateSnapshot{1, random_bytes(20u << 20)}; }, 1u << 20);
  DownloadResult r = download(0, 3u << 20);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("larger than the limit"), std::string::npos) << r.error;
  EXPECT_TRUE(r.bytes.empty());
}

// A hostile server: parts as told, then a final result as told.
struct Hostile {
  std::vector<std::string> parts;
  std::string final_result;  // "" : never answer
};

void serve_hostile(Rpc& rpc, const Hostile& h) {
  rpc.handle("train.state", [h](net::Request& r) {
    for (auto& p : h.parts) r.responder.send_part(p);
    if (!h.final_result.empty()) r.respond(h.final_result);
  });
}

TEST_F(State, HostileServersAreCaught) {
  two_peers();
  std::string a(1000, 'a'), b(500, 'b');
  std::string ab = a + b;

  serve_hostile(*rpcs[0], {{part(0, a), part(1000, b)}, result(4, 1500, xxh3(ab) ^ 1)});
  DownloadResult r = download(0);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("checksum mismatch"), std::string::npos) << r.error;

  serve_hostile(*rpcs[0], {{part(0, a), part(1000, b)}, result(4, 1400, xxh3(ab))});
  r = download(0);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("size mismatch"), std::string::npos) << r.error;

  serve_hostile(*rpcs[0], {{part(0, a), part(900, b)}, result(4, 1500, xxh3(ab))});
  r = download(0);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("offset"), std::string::npos) << r.error;

  serve_hostile(*rpcs[0], {{part(0, a), std::string("\xc0", 1)}, result(4, 1000, xxh3(a))});
  r = download(0);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("bad state part"), std::string::npos) << r.error;

  // Ignores min_epoch and sends an old state: consistent, but refused.
  serve_hostile(*rpcs[0], {{part(0, a), part(1000, b)}, result(2, 1500, xxh3(ab))});
  r = download(3);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.error.find("older than min_epoch"), std::string::npos) << r.error;

  serve_hostile(*rpcs[0], {{part(0, a), part(1000, b)}, result(4, 1500, xxh3(ab))});
  r = download(3);
  EXPECT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.bytes, ab);
}

TEST_F(State, ServerGoneMidTransfer) {
  two_peers();
  std::string a(100000, 'x');
  int parts_sent = 0;
  rpcs[0]->handle("train.state", [&](net::Request& r) {
    r.responder.send_part(part(0, a));
    r.responder.send_part(part(a.size(), a));
    parts_sent = 2;  // and then nothing: the server dies below
  });
  DownloadResult out;
  bool done = false;
  download_state(*rpcs[1], rpcs[0]->address(), 0, 10000, 1ull << 30, [&](DownloadResult r) {
    out = std::move(r);
    done = true;
  });
  ASSERT_TRUE(run_until([&] { return parts_sent == 2; }));
  sleep_ms(50);
  rpcs[0]->close();
  ASSERT_TRUE(run_until([&] { return done; }, 5000));  // long before the 10 s deadline
  EXPECT_FALSE(out.ok);
  EXPECT_FALSE(out.error.empty());
  EXPECT_TRUE(out.bytes.empty());
}
