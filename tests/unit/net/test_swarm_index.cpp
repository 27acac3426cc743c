// The swarm's index records (net/swarm_index.h): round trips, strict decoding,
// and the reader's filters (expired, owner subkeys, malformed, the cap).
#include <gtest/gtest.h>

#include "net/msg.h"
#include "net/swarm_index.h"

using namespace engine::net;

namespace {

msgpack::object_handle unpack(const std::string& s) { return unpack_untrusted(s.data(), s.size()); }

std::string map_of(const std::function<void(Packer&)>& body, uint32_t n) {
  Buf b;
  Packer pk(b);
  pk.pack_map(n);
  body(pk);
  return b.s;
}

}  // namespace

TEST(SwarmIndex, RoundTrips) {
  ModelEntry m{"llama", 32, 4096};
  ModelEntry m2 = decode_model_entry("llama", unpack(encode_model_entry(m)).get());
  EXPECT_EQ(m2.name, "llama");
  EXPECT_EQ(m2.blocks, 32);
  EXPECT_EQ(m2.n_embd, 4096);
  RunEntry r{"demo.s1", "demo", 64};
  RunEntry r2 = decode_run_entry("demo.s1", unpack(encode_run_entry(r)).get());
  EXPECT_EQ(r2.name, "demo.s1");
  EXPECT_EQ(r2.parent, "demo");
  EXPECT_EQ(r2.target_batch, 64);
}

TEST(SwarmIndex, RejectsMalformedEntries) {
  auto blocks = [](int64_t n) {
    return map_of([n](Packer& pk) { pack_str(pk, "blocks"), pk.pack_int64(n); }, 1);
  };
  EXPECT_NO_THROW(decode_model_entry("m", unpack(blocks(5)).get()));  // n_embd is optional
  EXPECT_THROW(decode_model_entry("m", unpack(blocks(0)).get()), BadMessage);
  EXPECT_THROW(decode_model_entry("m", unpack(blocks(1 << 21)).get()), BadMessage);
  EXPECT_THROW(decode_model_entry("m", unpack(map_of([](Packer&) {}, 0)).get()), BadMessage);
  auto target = [](int64_t n) {
    return map_of([n](Packer& pk) { pack_str(pk, "target_batch"), pk.pack_int64(n); }, 1);
  };
  EXPECT_EQ(decode_run_entry("r", unpack(target(8)).get()).parent, "");  // parent is optional
  EXPECT_THROW(decode_run_entry("r", unpack(target(-1)).get()), BadMessage);
  std::string long_parent = map_of([](Packer& pk) {
    pack_str(pk, "target_batch"), pk.pack_int64(8);
    pack_str(pk, "parent"), pack_str(pk, std::string(300, 'x'));
  }, 2);
  EXPECT_THROW(decode_run_entry("r", unpack(long_parent).get()), BadMessage);
}

TEST(SwarmIndex, ReaderSkipsExpiredOwnedAndMalformedAndCaps) {
  Record rec;
  rec.is_dict = true;
  const double now = 1000;
  rec.dict["alive"] = {encode_model_entry({"alive", 5, 64}), now + 10};
  rec.dict["expired"] = {encode_model_entry({"expired", 5, 64}), now - 1};
  rec.dict["@0123456789012345678901234567890123456789"] = {encode_model_entry({"x", 5, 64}), now + 10};
  rec.dict["garbage"] = {"\xc1", now + 10};
  rec.dict["wrong"] = {encode_run_entry({"wrong", "", 1}), now + 10};
  auto got = model_entries(rec, now);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].name, "alive");
  EXPECT_EQ(got[0].blocks, 5);

  Record many;
  many.is_dict = true;
  for (int i = 0; i < 100; i++) {
    char name[16];
    std::snprintf(name, sizeof name, "run%03d", i);
    many.dict[name] = {encode_run_entry({name, "", 4}), now + 10};
  }
  auto runs = run_entries(many, now);
  ASSERT_EQ(runs.size(), kMaxIndexEntries);
  EXPECT_EQ(runs.front().name, "run000");  // name order: the cap is deterministic
  Record plain;
  plain.plain = {encode_run_entry({"p", "", 1}), now + 10};
  EXPECT_TRUE(run_entries(plain, now).empty());
}
