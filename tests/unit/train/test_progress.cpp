// Progress records in the DHT: the strict decoder, global sums among three
// peers on loopback, a vanished peer's record expiring, hostile records being
// skipped, and the run's config (majority, then lowest peer id).
#include <gtest/gtest.h>

#include <cmath>

#include "loop_peers.h"
#include "train/progress_tracker.h"

using namespace engine;
using namespace engine::train;

namespace {

PeerProgress record(int64_t epoch, int64_t samples, double sps) {
  PeerProgress p;
  p.epoch = epoch;
  p.samples = samples;
  p.samples_per_s = sps;
  p.time = 1700000000.5;
  p.addr = "127.0.0.1:4000";
  p.bandwidth = 2.5;
  p.client_mode = true;
  p.params_xxh3 = 0xfedcba9876543210ull;
  return p;
}

// A progress map with one field replaced by a raw msgpack value.
std::string with_field(const std::string& key, const std::function<void(net::Packer&)>& value) {
  const char* keys[] = {"epoch", "samples", "sps", "time", "addr", "bandwidth", "client", "params_xxh3"};
  net::Buf b;
  net::Packer pk(b);
  pk.pack_map(8);
  for (const char* k : keys) {
    net::pack_str(pk, k);
    if (key == k) value(pk);
    else if (std::string(k) == "addr") net::pack_str(pk, "");
    else if (std::string(k) == "client") pk.pack_false();
    else pk.pack_int(1);
  }
  return b.s;
}

PeerProgress decode(const std::string& s) {
  auto oh = net::unpack_untrusted(s.data(), s.size());
  return decode_progress(oh.get());
}

std::string config(int layers) {
  net::Buf b;
  net::Packer pk(b);
  pk.pack_map(2);
  net::pack_str(pk, "n_layer");
  pk.pack_int(layers);
  net::pack_str(pk, "arch");
  net::pack_str(pk, "llama");
  return b.s;
}

struct Progress : traintest::LoopPeers {
  bool publish(size_t i, const PeerProgress& p, double ttl = 60) {
    int ok = -1;
    publish_progress(*nodes[i], "run1", p, ttl, [&](bool o) { ok = o; });
    EXPECT_TRUE(run_until([&] { return ok >= 0; }));
    return ok == 1;
  }
  GlobalProgress fetch(size_t i) {
    GlobalProgress g;
    bool done = false;
    fetch_progress(*nodes[i], "run1", [&](const GlobalProgress& r) {
      g = r;
      done = true;
    });
    EXPECT_TRUE(run_until([&] { return done; }));
    return g;
  }
  void put_raw(size_t i, const std::string& subkey, const std::string& value) {
    bool done = false;
    nodes[i]->put(progress_key("run1"), subkey, value, nodes[i]->now() + 60,
                  [&](int, int, const net::LookupStats&) { done = true; });
    EXPECT_TRUE(run_until([&] { return done; }));
  }
  void publish_config(size_t i, const std::string& cfg) {
    int ok = -1;
    publish_run_config(*nodes[i], "run1", cfg, 60, [&](bool o) { ok = o; });
    EXPECT_TRUE(run_until([&] { return ok >= 0; }));
    EXPECT_EQ(ok, 1);
  }
  std::optional<std::string> fetch_config(size_t i) {
    std::optional<std::string> out;
    bool done = false;
    fetch_run_config(*nodes[i], "run1", [&](const std::optional<std::string>& c) {
      out = c;
      done = true;
    });
    EXPECT_TRUE(run_until([&] { return done; }));
    return out;
  }
};

}  // namespace

TEST(ProgressRecord, RoundTrips) {
  PeerProgress p = record(7, 1234, 56.5);
  PeerProgress q = decode(encode_progress(p));
  EXPECT_EQ(q.epoch, 7);
  EXPECT_EQ(q.samples, 1234);
  EXPECT_DOUBLE_EQ(q.samples_per_s, 56.5);
  EXPECT_DOUBLE_EQ(q.time, p.time);
  EXPECT_EQ(q.addr, p.addr);
  EXPECT_DOUBLE_EQ(q.bandwidth, 2.5);
  EXPECT_TRUE(q.client_mode);
  EXPECT_EQ(q.params_xxh3, p.params_xxh3);
}

TEST(ProgressRecord, MalformedIsRefused) {
  EXPECT_NO_THROW(decode(with_field("epoch", [](net::Packer& pk) { pk.pack_int(3); })));
  EXPECT_THROW(decode(with_field("epoch", [](net::Packer& pk) { pk.pack_int(-1); })), net::BadMessage);
  EXPECT_THROW(decode(with_field("epoch", [](net::Packer& pk) { net::pack_str(pk, "3"); })), net::BadMessage);
  EXPECT_THROW(decode(with_field("samples", [](net::Packer& pk) { pk.pack_nil(); })), net::BadMessage);
  EXPECT_THROW(decode(with_field("sps", [](net::Packer& pk) { pk.pack_double(NAN); })), net::BadMessage);
  EXPECT_THROW(decode(with_field("sps", [](net::Packer& pk) { pk.pack_double(-1); })), net::BadMessage);
  EXPECT_THROW(decode(with_field("bandwidth", [](net::Packer& pk) { pk.pack_double(INFINITY); })),
               net::BadMessage);
  EXPECT_THROW(decode(with_field("addr", [](net::Packer& pk) { net::pack_str(pk, std::string(300, 'a')); })),
               net::BadMessage);
  EXPECT_THROW(decode(with_field("client", [](net::Packer& pk) { pk.pack_int(1); })), net::BadMessage);
  std::string truncated = encode_progress(record(1, 1, 1));
  EXPECT_THROW(decode(truncated.substr(0, truncated.size() - 3)), net::BadMessage);
  net::Buf b;
  net::Packer pk(b);
  pk.pack_map(1);
  net::pack_str(pk, "epoch");
  pk.pack_int(1);
  EXPECT_THROW(decode(b.s), net::BadMessage);  // the other fields missing
  net::Buf a;
  net::Packer pa(a);
  pa.pack_array(0);
  EXPECT_THROW(decode(a.s), net::BadMessage);
}

TEST(ProgressRecord, Eta) {
  GlobalProgress g;
  g.samples_at_epoch = 30;
  g.samples_per_s = 5;
  EXPECT_DOUBLE_EQ(g.eta(100), 14.0);
  EXPECT_DOUBLE_EQ(g.eta(30), 0.0);
  g.samples_per_s = 0;
  EXPECT_TRUE(std::isinf(g.eta(100)));
}

TEST_F(Progress, ThreePeersSumAtTheHighestEpoch) {
  grow(3);
  EXPECT_TRUE(publish(0, record(5, 10, 2)));
  EXPECT_TRUE(publish(1, record(5, 20, 3)));
  EXPECT_TRUE(publish(2, record(4, 100, 50)));  // behind: not counted at epoch 5
  for (size_t i = 0; i < 3; i++) {
    GlobalProgress g = fetch(i);
    EXPECT_EQ(g.epoch, 5);
    EXPECT_EQ(g.peers, 3);
    EXPECT_EQ(g.peers_at_epoch, 2);
    EXPECT_EQ(g.samples_at_epoch, 30);
    EXPECT_DOUBLE_EQ(g.samples_per_s, 5);
    EXPECT_DOUBLE_EQ(g.eta(100), 14);
  }
  // A newer report replaces the peer's previous one.
  EXPECT_TRUE(publish(0, record(5, 40, 2)));
  GlobalProgress g = fetch(2);
  EXPECT_EQ(g.samples_at_epoch, 60);
  bool mine = false;
  std::string own0 = "@";
  own0 += nodes[0]->id().hex();
  for (auto& r : g.records)
    if (r.peer == own0) mine = r.samples == 40 && r.expiration > nodes[0]->now();
  EXPECT_TRUE(mine);
}

TEST_F(Progress, VanishedPeerExpires) {
  grow(3);
  EXPECT_TRUE(publish(0, record(2, 10, 1)));
  EXPECT_TRUE(publish(1, record(2, 10, 1)));
  EXPECT_TRUE(publish(2, record(3, 7, 1), 0.6));  // short ttl, then it dies
  EXPECT_EQ(fetch(0).epoch, 3);
  kill(2);
  sleep_ms(800);
  GlobalProgress g = fetch(0);
  EXPECT_EQ(g.peers, 2);
  EXPECT_EQ(g.epoch, 2);
  EXPECT_EQ(g.samples_at_epoch, 20);
}

TEST_F(Progress, MalformedRecordsAreSkipped) {
  grow(3);
  EXPECT_TRUE(publish(0, record(1, 10, 1)));
  std::string own1 = "@";
  own1 += nodes[1]->id().hex();
  put_raw(1, own1, with_field("epoch", [](net::Packer& pk) { pk.pack_int(-5); }));
  // Not an owner subkey: anyone may write it, so it is not a peer's record.
  put_raw(2, "someone", encode_progress(record(99, 1000, 1000)));
  GlobalProgress g = fetch(2);
  EXPECT_EQ(g.peers, 1);
  EXPECT_EQ(g.epoch, 1);
  EXPECT_EQ(g.samples_at_epoch, 10);
}

TEST_F(Progress, RunConfigMajorityThenLowestId) {
  grow(3);
  EXPECT_FALSE(fetch_config(2).has_value());
  publish_config(0, config(4));
  auto c = fetch_config(2);
  ASSERT_TRUE(c.has_value());
  EXPECT_TRUE(same_run_config(*c, config(4)));
  EXPECT_FALSE(same_run_config(*c, config(5)));
  // A dissenting copy: one against one, the lower peer id wins.
  publish_config(1, config(5));
  bool zero_lower = nodes[0]->id() < nodes[1]->id();
  EXPECT_TRUE(same_run_config(*fetch_config(2), config(zero_lower ? 4 : 5)));
  // A joiner that agreed: two against one.
  publish_config(2, config(4));
  EXPECT_TRUE(same_run_config(*fetch_config(1), config(4)));
  EXPECT_THROW(publish_run_config(*nodes[0], "run1", "\x93\x01\x02\x03", 60, [](bool) {}), Error);
}
