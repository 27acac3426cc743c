// Butterfly all-reduce on loopback: several Rpc on one uv loop, one averager each.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <random>

#include "../net/loop_util.h"
#include "core/error.h"
#include "train/avg_messages.h"
#include "train/butterfly.h"

using namespace engine;
using namespace engine::train;
using nettest::run_until;

namespace {

using Vecs = std::vector<std::vector<float>>;

Vecs random_vecs(uint32_t seed, int n, int64_t d, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> N(0.0f, scale);
  Vecs v(n, std::vector<float>(d));
  for (auto& x : v)
    for (auto& e : x) e = N(rng);
  return v;
}

std::vector<double> weighted_mean(const Vecs& g, const std::vector<double>& w, const std::vector<int>& who) {
  std::vector<double> m(g[0].size(), 0.0);
  double W = 0;
  for (int i : who) {
    W += w[i];
    for (size_t k = 0; k < m.size(); k++) m[k] += w[i] * g[i][k];
  }
  for (auto& x : m) x /= W;
  return m;
}

// n peers on one loop; `client[i]` peers do not listen.
struct Group {
  uv_loop_t loop;
  std::vector<std::unique_ptr<net::Rpc>> rpc;
  std::vector<std::unique_ptr<ButterflyAllReduce>> avg;
  std::vector<GroupMember> members;

  explicit Group(int n, std::vector<double> bw = {}, std::vector<bool> client = {}) {
    uv_loop_init(&loop);
    for (int i = 0; i < n; i++) {
      rpc.push_back(std::make_unique<net::Rpc>(&loop));
      bool cl = i < (int)client.size() && client[i];
      GroupMember m;
      m.id = rpc[i]->id();
      if (!cl) m.addr = rpc[i]->listen("127.0.0.1:0");
      m.client_mode = cl;
      m.bandwidth = i < (int)bw.size() ? bw[i] : 1.0;
      members.push_back(m);
      avg.push_back(std::make_unique<ButterflyAllReduce>(*rpc[i]));
    }
  }
  ~Group() {
    avg.clear();
    for (auto& r : rpc) r->close();
    rpc.clear();
    nettest::drain_loop(&loop);
    EXPECT_EQ(uv_loop_close(&loop), 0);
  }
  RoundSpec spec(int i, const std::string& round = "r1") const { return RoundSpec{round, members, i}; }

  // Starts the members in `who` (all when empty) and runs the loop until they are done.
  std::vector<std::optional<AllReduceResult>> run(const Vecs& v, const std::vector<double>& w,
                                                  const AllReduceConfig& cfg, std::vector<int> who = {},
                                                  int corrupt_member = -1, const std::string& round = "r1") {
    if (who.empty())
      for (int i = 0; i < (int)members.size(); i++) who.push_back(i);
    std::vector<std::optional<AllReduceResult>> out(members.size());
    int done = 0;
    for (int i : who) {
      std::function<void(std::vector<float>&)> corrupt;
      if (i == corrupt_member)
        corrupt = [](std::vector<float>& x) {
          for (auto& e : x) e *= 1000.0f;
        };
      avg[i]->all_reduce(spec(i, round), v[i], w[i], cfg, [&out, &done, i](AllReduceResult r) {
        EXPECT_FALSE(out[i].has_value()) << "done twice";
        out[i] = std::move(r);
        done++;
      }, corrupt);
    }
    EXPECT_TRUE(run_until(&loop, [&] { return done == (int)who.size(); }, (int)cfg.deadline_ms + 3000));
    return out;
  }
};

AllReduceConfig mean_cfg(WireDType t = WireDType::F32) {
  AllReduceConfig c;
  c.aggregator = Aggregator::Mean;
  c.wire = t;
  c.deadline_ms = 1500;
  c.chunk_bytes = 4096;  // many chunks per part: exercises windows and slicing
  return c;
}

bool has(const std::vector<net::NodeId>& v, const net::NodeId& id) {
  return std::find(v.begin(), v.end(), id) != v.end();
}

void expect_mean(const AllReduceResult& r, const std::vector<double>& ref, const char* what) {
  ASSERT_EQ(r.averaged.size(), ref.size());
  for (size_t k = 0; k < ref.size(); k++)
    ASSERT_NEAR(r.averaged[k], ref[k], 2e-7 * (std::fabs(ref[k]) + 1e-3)) << what << " k=" << k;
}

}  // namespace

// ---- wire dtypes and partition ----------------------------------------------

TEST(ButterflyWire, ErrorsWithinTheDocumentedBounds) {
  Vecs v = random_vecs(7, 1, 1000, 0.01f);  // gradient-sized values
  v[0][5] = 1e5f;                           // beyond f16: saturates
  v[0][6] = 1e-9f;                          // f16 subnormal range
  const int64_t n = 1000;                   // not a multiple of 32
  std::vector<float> back(n);

  wire_decode(WireDType::F32, wire_encode(WireDType::F32, v[0].data(), n), back.data(), n);
  EXPECT_EQ(back, v[0]);

  std::string h = wire_encode(WireDType::F16, v[0].data(), n);
  EXPECT_EQ(h.size(), 2000u);
  wire_decode(WireDType::F16, h, back.data(), n);
  for (int64_t k = 0; k < n; k++) {
    if (k == 5) continue;
    EXPECT_LE(std::fabs(back[k] - v[0][k]), std::fabs(v[0][k]) * std::ldexp(1.0f, -11) + std::ldexp(1.0f, -25));
  }
  EXPECT_EQ(back[5], 65504.0f);

  std::string q = wire_encode(WireDType::Q8, v[0].data(), n);
  EXPECT_EQ(q.size(), 32u * 36);  // ceil(1000/32) blocks of 36 bytes
  wire_decode(WireDType::Q8, q, back.data(), n);
  for (int64_t b = 0; b < n; b += 32) {
    float m = 0;
    for (int64_t k = b; k < std::min<int64_t>(n, b + 32); k++) m = std::max(m, std::fabs(v[0][k]));
    for (int64_t k = b; k < std::min<int64_t>(n, b + 32); k++)
      EXPECT_LE(std::fabs(back[k] - v[0][k]), m / 254 * 1.0001f) << k;
  }
  EXPECT_THROW(wire_decode(WireDType::Q8, q.substr(1), back.data(), n), Error);
  EXPECT_EQ(wire_chunk_values(WireDType::Q8, 4096), 113 * 32);
  EXPECT_EQ(wire_chunk_values(WireDType::F16, 4096), 2048);
}

TEST(ButterflyPartition, ProportionalToBandwidth) {
  std::vector<GroupMember> m(4);
  m[0].bandwidth = 1;
  m[1].bandwidth = 2;
  m[2].bandwidth = 1;
  m[3].client_mode = true;  // reduces nothing
  auto off = partition(m, 1000);
  ASSERT_EQ(off, (std::vector<int64_t>{0, 250, 750, 1000}));
  EXPECT_EQ(reducer_members(m), (std::vector<int>{0, 1, 2}));

  m[1].bandwidth = 1000;  // a fast peer still leaves every reducer one element
  off = partition(m, 10);
  EXPECT_EQ(off.back(), 10);
  for (size_t j = 0; j + 1 < off.size(); j++) EXPECT_GE(off[j + 1] - off[j], 1);
  EXPECT_EQ(off[2] - off[1], 8);

  off = partition(m, 2);  // fewer elements than reducers
  EXPECT_EQ(off.back(), 2);
  m[0].bandwidth = std::nan("");  // invalid announcements count as 0
  off = partition(m, 1001);
  EXPECT_EQ(off.back(), 1001);
  EXPECT_EQ(off[1] - off[0], 1);
}

// ---- rounds on loopback -------------------------------------------------------

TEST(Butterfly, WeightedMeanOverOneTwoThreeFivePeers) {
  for (int n : {1, 2, 3, 5}) {
    Group g(n);
    const int64_t d = 10007;
    Vecs v = random_vecs(100 + n, n, d);
    std::vector<double> w;
    for (int i = 0; i < n; i++) w.push_back(1.0 + i * 0.75);
    auto res = g.run(v, w, mean_cfg());
    std::vector<int> all;
    for (int i = 0; i < n; i++) all.push_back(i);
    auto ref = weighted_mean(v, w, all);
    for (int i = 0; i < n; i++) {
      ASSERT_TRUE(res[i]) << "n=" << n << " member " << i;
      const auto& r = *res[i];
      if (n == 1) {
        EXPECT_EQ(r.averaged, v[0]);  // a group of one: its own vector, no RPC
        EXPECT_EQ(r.bytes_sent + r.bytes_received, 0u);
        EXPECT_EQ(g.rpc[0]->stats().calls, 0u);
        continue;
      }
      expect_mean(r, ref, "f32");
      EXPECT_EQ(r.averaged, res[0]->averaged);  // identical on every member
      EXPECT_EQ(r.parts_total, n);
      EXPECT_EQ(r.parts_failed, 0);
      EXPECT_TRUE(r.dropped.empty());
      EXPECT_GT(r.bytes_sent, 0u);
    }
    ASSERT_TRUE(run_until(&g.loop, [&] {
      for (auto& a : g.avg)
        if (a->rounds_held()) return false;
      return true;
    }));  // every round's state is freed once all parts are served
  }
}

TEST(Butterfly, HalfAndInt8WireWithinTheirErrors) {
  const int n = 3;
  const int64_t d = 5000;
  Vecs v = random_vecs(9, n, d);
  std::vector<double> w = {1, 2, 3};
  auto ref = weighted_mean(v, w, {0, 1, 2});
  for (WireDType t : {WireDType::F16, WireDType::Q8}) {
    Group g(n);
    auto res = g.run(v, w, mean_cfg(t));
    uint64_t bytes = 0;
    for (int i = 0; i < n; i++) {
      ASSERT_TRUE(res[i]);
      bytes += res[i]->bytes_sent;
      EXPECT_EQ(res[i]->averaged, res[0]->averaged);
      for (int64_t k = 0; k < d; k++) {
        // Bound: every contribution's error (weighted) plus the result's own rounding.
        double bound;
        if (t == WireDType::F16) {
          double in = 0;
          for (int p = 0; p < n; p++) in += w[p] * std::fabs(v[p][k]);
          bound = (in / 6 + std::fabs(ref[k])) * std::ldexp(1.0, -11) * 1.01 + 1e-7;
        } else {
          // Block maxima: any 32-block containing k lies within [k-31, k+31].
          double in = 0, out = 0;
          for (int p = 0; p < n; p++) {
            double m = 0;
            for (int64_t q = std::max<int64_t>(0, k - 31); q < std::min<int64_t>(d, k + 32); q++)
              m = std::max(m, (double)std::fabs(v[p][q]));
            in += w[p] * m / 254;
          }
          for (int64_t q = std::max<int64_t>(0, k - 31); q < std::min<int64_t>(d, k + 32); q++)
            out = std::max(out, std::fabs(ref[q]) + in);
          bound = (in / 6 + out / 254) * 1.01;
        }
        ASSERT_LE(std::fabs(res[i]->averaged[k] - ref[k]), bound) << wire_dtype_name(t) << " k=" << k;
      }
    }
    // Each member sends 2/3 of its vector and receives 2/3 of the result, plus serves its part.
    uint64_t expect = 2 * 2 * wire_bytes(t, d) / 3 * n;
    EXPECT_NEAR((double)bytes, (double)expect, 0.02 * expect) << wire_dtype_name(t);
  }
}

TEST(Butterfly, ClientModeMemberSendsAndReceivesOnly) {
  Group g(3, {}, {false, false, true});
  Vecs v = random_vecs(11, 3, 3001);
  std::vector<double> w = {1, 1, 2};
  auto res = g.run(v, w, mean_cfg());
  auto ref = weighted_mean(v, w, {0, 1, 2});
  for (int i = 0; i < 3; i++) {
    ASSERT_TRUE(res[i]);
    EXPECT_EQ(res[i]->parts_total, 2);
    expect_mean(*res[i], ref, "client mode");
  }
  EXPECT_EQ(g.rpc[2]->stats().requests_in, 0u);  // nobody calls a client
}

TEST(Butterfly, LateStarterGetsTheEarlyParts) {
  // Member 2 starts 300 ms after the others: their avg.part / avg.result calls to
  // it wait in its early buffer and are answered once it starts.
  Group g(3);
  Vecs v = random_vecs(12, 3, 4000);
  std::vector<double> w = {1, 1, 1};
  auto cfg = mean_cfg();
  std::vector<std::optional<AllReduceResult>> res(3);
  int done = 0;
  for (int i = 0; i < 2; i++)
    g.avg[i]->all_reduce(g.spec(i), v[i], w[i], cfg, [&, i](AllReduceResult r) { res[i] = std::move(r), done++; });
  run_until(&g.loop, [] { return false; }, 300);
  EXPECT_EQ(g.avg[2]->rounds_held(), 1u);  // buffered, not started
  g.avg[2]->all_reduce(g.spec(2), v[2], w[2], cfg, [&](AllReduceResult r) { res[2] = std::move(r), done++; });
  ASSERT_TRUE(run_until(&g.loop, [&] { return done == 3; }, 5000));
  auto ref = weighted_mean(v, w, {0, 1, 2});
  for (int i = 0; i < 3; i++) {
    expect_mean(*res[i], ref, "late starter");
    EXPECT_EQ(res[i]->parts_failed, 0);
  }
}

TEST(Butterfly, SilentSenderIsDroppedByTheDeadline) {
  const int64_t d = 3000;
  Vecs v = random_vecs(13, 3, d);
  std::vector<double> w = {1, 2, 1};
  auto cfg = mean_cfg();
  {
    // The silent member is a client: every part is reduced by the others, who
    // drop it at 70% of the deadline and agree on their own mean.
    Group g(3, {}, {false, false, true});
    auto res = g.run(v, w, cfg, {0, 1});
    auto ref = weighted_mean(v, w, {0, 1});
    for (int i = 0; i < 2; i++) {
      ASSERT_TRUE(res[i]);
      expect_mean(*res[i], ref, "silent client");
      EXPECT_EQ(res[i]->parts_failed, 0);
      EXPECT_EQ(res[i]->dropped, std::vector<net::NodeId>{g.members[2].id});
      EXPECT_LE(res[i]->seconds, cfg.deadline_ms / 1000.0 + 1.0);  // by the deadline (generous slack)
    }
  }
  {
    // The silent member is a reducer: its part stays at local values.
    Group g(3);
    auto res = g.run(v, w, cfg, {0, 1});
    auto ref = weighted_mean(v, w, {0, 1});
    auto off = partition(g.members, d);
    for (int i = 0; i < 2; i++) {
      ASSERT_TRUE(res[i]);
      EXPECT_EQ(res[i]->parts_failed, 1);
      EXPECT_TRUE(has(res[i]->dropped, g.members[2].id));
      for (int64_t k = 0; k < d; k++) {
        if (k >= off[2]) ASSERT_EQ(res[i]->averaged[k], v[i][k]) << k;
        else ASSERT_NEAR(res[i]->averaged[k], ref[k], 2e-7 * (std::fabs(ref[k]) + 1e-3)) << k;
      }
    }
  }
}

TEST(Butterfly, GoneReducerLeavesItsPartLocal) {
  Group g(3);
  const int64_t d = 3000;
  Vecs v = random_vecs(14, 3, d);
  std::vector<double> w = {1, 1, 1};
  g.avg[2].reset();
  g.rpc[2]->close();
  auto res = g.run(v, w, mean_cfg(), {0, 1});
  auto ref = weighted_mean(v, w, {0, 1});
  auto off = partition(g.members, d);
  for (int i = 0; i < 2; i++) {
    ASSERT_TRUE(res[i]);
    EXPECT_EQ(res[i]->parts_failed, 1);
    EXPECT_EQ(res[i]->dropped, std::vector<net::NodeId>{g.members[2].id});
    for (int64_t k = off[2]; k < d; k++) ASSERT_EQ(res[i]->averaged[k], v[i][k]);
    for (int64_t k = 0; k < off[2]; k++) ASSERT_NEAR(res[i]->averaged[k], ref[k], 2e-7 * (std::fabs(ref[k]) + 1e-3));
  }
}

TEST(Butterfly, MemberThatDiesMidRoundIsDroppedWithoutWaitingForTheDeadline) {
  // All three start; member 2 then vanishes. The others learn it from their refused
  // calls (or, had it connected, from its closed connections): its part fails, its
  // contribution is dropped, and the round ends long before its 60 s deadline (the
  // loop is run for at most 10 s).
  Group g(3);
  const int64_t d = 3000;
  Vecs v = random_vecs(17, 3, d);
  AllReduceConfig cfg = mean_cfg();
  cfg.deadline_ms = 60000;
  std::vector<std::optional<AllReduceResult>> res(3);
  int done = 0;
  for (int i = 0; i < 3; i++)
    g.avg[i]->all_reduce(g.spec(i), v[i], 1.0, cfg, [&res, &done, i](AllReduceResult r) {
      res[i] = std::move(r);
      done++;
    });
  // Member 2 dies before anything went out: the others' calls to it are refused.
  g.avg[2].reset();
  g.rpc[2]->close();
  ASSERT_TRUE(run_until(&g.loop, [&] { return res[0] && res[1]; }, 10000));
  for (int i = 0; i < 2; i++) {
    EXPECT_EQ(res[i]->parts_failed, 1) << i;
    EXPECT_TRUE(has(res[i]->dropped, g.members[2].id)) << i;
  }
  // The surviving parts are the mean of the two survivors, the same on both.
  auto off = partition(g.members, d);
  auto ref = weighted_mean(v, {1, 1, 1}, {0, 1});
  for (int64_t k = 0; k < off[2]; k++) {
    ASSERT_EQ(res[0]->averaged[k], res[1]->averaged[k]);
    ASSERT_NEAR(res[0]->averaged[k], ref[k], 2e-7 * (std::fabs(ref[k]) + 1e-3));
  }
}

TEST(Butterfly, CenteredClipResistsAThousandfoldLiar) {
  // Honest vectors: a common vector plus noise σ = 0.01 per coordinate; each part
  // has ~1000 coordinates, so honest contributions lie ~0.3 from the honest mean
  // there, inside τ = 1. Member 3 sends 1000× its vector; CenteredClip keeps each
  // part within τ/3 (< τ/2) of the honest mean (see test_centered_clip.cpp).
  const int n = 4;
  const int64_t d = 4000;
  Vecs base = random_vecs(15, 1, d), noise = random_vecs(16, n, d, 0.01f);
  Vecs v(n, std::vector<float>(d));
  for (int i = 0; i < n; i++)
    for (int64_t k = 0; k < d; k++) v[i][k] = base[0][k] + noise[i][k];
  std::vector<double> w(n, 1.0);
  auto cfg = mean_cfg();
  cfg.aggregator = Aggregator::CenteredClip;
  cfg.clip = ClipConfig{1.0f, 50, 1e-7f};
  Group g(n);
  auto res = g.run(v, w, cfg, {}, /*corrupt_member=*/3);
  auto honest = weighted_mean(v, w, {0, 1, 2});
  auto off = partition(g.members, d);
  for (int i = 0; i < n; i++) {
    ASSERT_TRUE(res[i]);
    EXPECT_EQ(res[i]->parts_failed, 0);
    for (int j = 0; j < n; j++) {
      double s = 0;
      for (int64_t k = off[j]; k < off[j + 1]; k++) s += std::pow(res[i]->averaged[k] - honest[k], 2);
      EXPECT_LT(std::sqrt(s), 0.5) << "member " << i << " part " << j;
    }
  }
}

// ---- hostile input --------------------------------------------------------------

namespace {

struct Hostile {
  uv_loop_t* loop;
  net::Rpc rpc;
  explicit Hostile(uv_loop_t* l) : loop(l), rpc(l) {}
  ~Hostile() { rpc.close(); }
  net::Reply call(const std::string& addr, const std::string& method, std::string body, uint32_t timeout = 2000) {
    net::Reply out;
    bool done = false;
    rpc.call(addr, method, std::move(body), timeout, [&](const net::Reply& r) {
      out.code = r.code;
      out.message = r.message;
      done = true;
    });
    EXPECT_TRUE(run_until(loop, [&] { return done; }, timeout + 2000));
    return out;
  }
};

std::string part_body(const std::string& round, uint32_t part, uint64_t chunk, int64_t offset,
                      const std::vector<float>& x, double weight = 1.0) {
  std::string data = wire_encode(WireDType::F32, x.data(), (int64_t)x.size());
  return encode_avg_part(AvgPart{round, part, chunk, offset, (int64_t)x.size(), weight, WireDType::F32, data});
}

}  // namespace

TEST(Butterfly, MalformedPartsGetErrorsAndDoNotCrash) {
  Group g(1);  // member 0; the hostile peer below plays member 1 (client mode)
  Hostile h(&g.loop);
  GroupMember hm;
  hm.id = h.rpc.id();
  hm.client_mode = true;
  g.members.push_back(hm);
  g.avg[0]->limits.max_rounds = 2;
  const std::string addr = g.members[0].addr;
  const int64_t d = 100;
  Vecs v = random_vecs(17, 2, d);

  // Not msgpack fields we know: code 1 from the decoder.
  EXPECT_EQ(h.call(addr, "avg.part", net::empty_map()).code, net::ErrorCode::kBadRequest);
  // Data size that does not match n.
  std::string bad = wire_encode(WireDType::F32, v[1].data(), 10);
  EXPECT_EQ(h.call(addr, "avg.part", encode_avg_part(AvgPart{"r1", 0, 0, 0, 11, 1.0, WireDType::F32, bad})).code,
            net::ErrorCode::kBadRequest);
  // Negative / zero / NaN weight.
  EXPECT_EQ(h.call(addr, "avg.part", part_body("r1", 0, 0, 0, v[1], 0.0)).code, net::ErrorCode::kBadRequest);
  EXPECT_EQ(h.call(addr, "avg.part", part_body("r1", 0, 0, 0, v[1], std::nan(""))).code,
            net::ErrorCode::kBadRequest);

  // Rounds that never start here: two are buffered (their calls time out), the
  // third is refused at once, and the buffered ones are dropped after their deadline.
  int timed_out = 0;
  for (const char* r : {"x1", "x2"})
    h.rpc.call(addr, "avg.part", part_body(r, 0, 0, 0, v[1]), 200, [&](const net::Reply& rep) {
      timed_out += rep.code == net::ErrorCode::kDeadlineExceeded;
    });
  ASSERT_TRUE(run_until(&g.loop, [&] { return g.avg[0]->rounds_held() == 2; }));
  EXPECT_EQ(h.call(addr, "avg.part", part_body("x3", 0, 0, 0, v[1])).code, net::ErrorCode::kRejected);
  ASSERT_TRUE(run_until(&g.loop, [&] { return timed_out == 2 && g.avg[0]->rounds_held() == 0; }));

  // A real round; the hostile member first sends a chunk with a NaN.
  auto cfg = mean_cfg();
  std::optional<AllReduceResult> res;
  g.avg[0]->all_reduce(g.spec(0), v[0], 1.0, cfg, [&](AllReduceResult r) { res = std::move(r); });
  std::vector<float> nan_part = v[1];
  nan_part[7] = std::nanf("");
  auto r = h.call(addr, "avg.part", part_body("r1", 0, 0, 0, nan_part));
  EXPECT_EQ(r.code, net::ErrorCode::kBadRequest);
  EXPECT_NE(r.message.find("non-finite"), std::string::npos) << r.message;
  // Now rejected for the round, even with a valid chunk.
  EXPECT_EQ(h.call(addr, "avg.part", part_body("r1", 0, 0, 0, v[1])).code, net::ErrorCode::kRejected);
  // Wrong part, wrong offset, unknown chunk: all code 1.
  EXPECT_EQ(h.call(addr, "avg.part", part_body("r1", 3, 0, 0, v[1])).code, net::ErrorCode::kBadRequest);
  EXPECT_EQ(h.call(addr, "avg.result", encode_avg_result_request({"r1", 0, 99})).code, net::ErrorCode::kBadRequest);

  ASSERT_TRUE(run_until(&g.loop, [&] { return res.has_value(); }, 4000));
  EXPECT_EQ(res->dropped, std::vector<net::NodeId>{hm.id});
  EXPECT_EQ(res->averaged, v[0]);  // only its own contribution was complete
  // Everyone else, not in the group: refused.
  net::Rpc stranger(&g.loop);
  bool done = false;
  net::ErrorCode code{};
  stranger.call(addr, "avg.result", encode_avg_result_request({"r2", 0, 0}), 200,
                [&](const net::Reply& rep) { code = rep.code, done = true; });
  g.avg[0]->all_reduce(RoundSpec{"r2", g.members, 0}, v[0], 1.0, cfg, [](AllReduceResult) {});
  ASSERT_TRUE(run_until(&g.loop, [&] { return done; }));
  EXPECT_EQ(code, net::ErrorCode::kRejected);
  stranger.close();
  ASSERT_TRUE(run_until(&g.loop, [&] { return g.avg[0]->rounds_held() == 0; }, 4000));
}

TEST(Butterfly, BadSpecsThrow) {
  Group g(2);
  auto cfg = mean_cfg();
  std::vector<float> x(10, 1.0f);
  auto s = g.spec(0);
  s.my_index = 1;  // not this rpc's id
  EXPECT_THROW(g.avg[0]->all_reduce(s, x, 1.0, cfg, [](AllReduceResult) {}), Error);
  EXPECT_THROW(g.avg[0]->all_reduce(g.spec(0), x, 0.0, cfg, [](AllReduceResult) {}), Error);
  cfg.chunk_bytes = 16;
  EXPECT_THROW(g.avg[0]->all_reduce(g.spec(0), x, 1.0, cfg, [](AllReduceResult) {}), Error);
  EXPECT_EQ(g.avg[0]->rounds_held(), 0u);
}
