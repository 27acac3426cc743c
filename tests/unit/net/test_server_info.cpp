// ServerInfo records: round trip, strict decoding of hostile values, keys.
#include <gtest/gtest.h>

#include "net/server_info.h"

using namespace engine::net;

TEST(ServerInfo, RoundTrip) {
  ServerInfo s;
  s.state = ServerState::kOnline;
  s.model = "stories260K";
  s.first = 2, s.last = 5;
  s.inference_rps = 123.5, s.forward_rps = 4567, s.network_rps = 1e6, s.throughput = 4567;
  s.cache_tokens_left = 8000;
  s.version = "engine/1";
  s.address = "127.0.0.1:4000";
  s.public_name = "alice";
  s.next_pings = {{"ab", 0.004}};
  s.adapters = {"lora-1"};
  std::string enc = encode_server_info(s);
  auto oh = unpack_untrusted(enc.data(), enc.size());
  ServerInfo d = decode_server_info(oh.get());
  EXPECT_EQ(d.state, s.state);
  EXPECT_EQ(d.model, s.model);
  EXPECT_EQ(d.first, 2);
  EXPECT_EQ(d.last, 5);
  EXPECT_DOUBLE_EQ(d.inference_rps, 123.5);
  EXPECT_DOUBLE_EQ(d.throughput, 4567);
  EXPECT_EQ(d.cache_tokens_left, 8000);
  EXPECT_EQ(d.address, s.address);
  EXPECT_EQ(d.public_name, "alice");
  EXPECT_EQ(d.version, "engine/1");
  EXPECT_DOUBLE_EQ(d.next_pings["ab"], 0.004);
  EXPECT_EQ(d.adapters, s.adapters);
}

TEST(ServerInfo, RejectsBadRecords) {
  auto bad = [](auto fill) {
    Buf b;
    Packer pk(b);
    fill(pk);
    auto oh = unpack_untrusted(b.s.data(), b.s.size());
    EXPECT_THROW(decode_server_info(oh.get()), BadMessage);
  };
  bad([](Packer& pk) { pk.pack_int(3); });                  // not a map
  bad([](Packer& pk) { pk.pack_map(1), pack_str(pk, "state"), pk.pack_int(1); });  // fields missing
  ServerInfo s;
  s.model = "m", s.first = 3, s.last = 2, s.address = "x";  // empty span
  std::string enc = encode_server_info(s);
  auto oh = unpack_untrusted(enc.data(), enc.size());
  EXPECT_THROW(decode_server_info(oh.get()), BadMessage);
  s.first = 0, s.last = 2, s.state = (ServerState)7;        // unknown state
  enc = encode_server_info(s);
  auto oh2 = unpack_untrusted(enc.data(), enc.size());
  EXPECT_THROW(decode_server_info(oh2.get()), BadMessage);
  s.state = ServerState::kOnline, s.throughput = -1;         // negative throughput
  enc = encode_server_info(s);
  auto oh3 = unpack_untrusted(enc.data(), enc.size());
  EXPECT_THROW(decode_server_info(oh3.get()), BadMessage);
}

TEST(ServerInfo, KeysAndCoverage) {
  EXPECT_EQ(block_key("llama-7b", 12), "llama-7b.12");
  EXPECT_EQ(peer_subkey("00ff"), "@00ff");
  ServerMap m;
  ServerInfo a;
  a.first = 0, a.last = 2, a.state = ServerState::kOnline;
  ServerInfo b = a;
  b.first = 1, b.last = 4, b.state = ServerState::kJoining;
  m["a"] = a, m["b"] = b;
  EXPECT_EQ(block_coverage(m, 5), (std::vector<int>{1, 1, 0, 0, 0}));
  EXPECT_EQ(block_coverage(m, 5, ServerState::kJoining), (std::vector<int>{1, 2, 1, 1, 0}));
}
