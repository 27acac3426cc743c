// Frames, msgpack decoding of untrusted bytes, envelopes and tensors.
#include <gtest/gtest.h>

#include <cstring>

#include "net/envelope.h"
#include "net/frame.h"
#include "net/msg.h"

using namespace engine::net;

static std::string pack_map_with(const std::function<void(Packer&)>& fill, uint32_t n) {
  Buf b;
  Packer pk(b);
  pk.pack_map(n);
  fill(pk);
  return b.s;
}

TEST(Frame, RoundTrip) {
  std::string body = "hello body";
  std::string f = encode_frame(body);
  ASSERT_EQ(f.size(), kFrameHeaderSize + body.size());
  EXPECT_EQ(f.substr(0, 4), "ENGN");
  std::string_view out;
  size_t used = 0;
  ASSERT_EQ(decode_frame((const uint8_t*)f.data(), f.size(), kDefaultMaxFrame, &out, &used), FrameError::kNone);
  EXPECT_EQ(out, body);
  EXPECT_EQ(used, f.size());
}

TEST(Frame, HeaderIsBigEndianAndChecksumCoversBody) {
  std::string f = encode_frame("abc");
  const uint8_t* p = (const uint8_t*)f.data();
  EXPECT_EQ(p[4], 0);
  EXPECT_EQ(p[5], kProtocolVersion);
  EXPECT_EQ(p[6] | p[7], 0);
  EXPECT_EQ(p[8] | p[9] | p[10], 0);
  EXPECT_EQ(p[11], 3);
  uint64_t sum = 0;
  for (int i = 0; i < 8; i++) sum = sum << 8 | p[12 + i];
  EXPECT_EQ(sum, frame_checksum("abc", 3));
}

TEST(Frame, TwoPieceChecksumEqualsJoined) {
  uint8_t a[kFrameHeaderSize], b[kFrameHeaderSize];
  write_frame_header(a, "prefix-", "payload");
  write_frame_header(b, "prefix-payload");
  EXPECT_EQ(std::memcmp(a, b, kFrameHeaderSize), 0);
}

TEST(Frame, EmptyBody) {
  std::string f = encode_frame("");
  std::string_view out;
  size_t used;
  EXPECT_EQ(decode_frame((const uint8_t*)f.data(), f.size(), 16, &out, &used), FrameError::kNone);
  EXPECT_EQ(out.size(), 0u);
}

static FrameError decode(const std::string& f, size_t max = kDefaultMaxFrame) {
  std::string_view out;
  size_t used;
  return decode_frame((const uint8_t*)f.data(), f.size(), max, &out, &used);
}

TEST(Frame, BadMagic) {
  std::string f = encode_frame("x");
  f[0] = 'X';
  EXPECT_EQ(decode(f), FrameError::kBadMagic);
  EXPECT_EQ(decode("GET / HTTP/1.1\r\n"), FrameError::kBadMagic);  // short and wrong
}

TEST(Frame, WrongVersion) {
  std::string f = encode_frame("x");
  f[5] = kProtocolVersion + 1;
  EXPECT_EQ(decode(f), FrameError::kBadVersion);
}

TEST(Frame, UnknownFlags) {
  std::string f = encode_frame("x");
  f[7] = 1;
  EXPECT_EQ(decode(f), FrameError::kBadFlags);
}

TEST(Frame, BadChecksum) {
  std::string f = encode_frame("some body");
  f.back() ^= 1;
  EXPECT_EQ(decode(f), FrameError::kBadChecksum);
  f = encode_frame("some body");
  f[15] ^= 0x80;  // inside the checksum field
  EXPECT_EQ(decode(f), FrameError::kBadChecksum);
}

TEST(Frame, Truncated) {
  std::string f = encode_frame("0123456789");
  for (size_t n = 0; n < f.size(); n++) EXPECT_EQ(decode(f.substr(0, n)), FrameError::kTruncated) << n;
}

TEST(Frame, Oversized) {
  std::string f = encode_frame(std::string(100, 'a'));
  EXPECT_EQ(decode(f, 99), FrameError::kOversized);
  EXPECT_EQ(decode(f, 100), FrameError::kNone);
  // A header that claims 4 GiB is refused from the header alone.
  std::string h = f.substr(0, kFrameHeaderSize);
  h[8] = h[9] = h[10] = h[11] = (char)0xff;
  EXPECT_EQ(decode(h), FrameError::kOversized);
}

TEST(FrameReader, ByteByByteAndBatched) {
  std::string stream = encode_frame("one") + encode_frame("") + encode_frame(std::string(70000, 'z'));
  FrameReader r;
  std::vector<std::string> got;
  for (char c : stream) {
    r.feed(&c, 1);
    std::string_view b;
    while (r.next(&b) == FrameReader::kFrame) got.emplace_back(b);
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], "one");
  EXPECT_EQ(got[1], "");
  EXPECT_EQ(got[2].size(), 70000u);

  FrameReader r2;
  r2.feed(stream.data(), stream.size());
  std::string_view b;
  int n = 0;
  while (r2.next(&b) == FrameReader::kFrame) n++;
  EXPECT_EQ(n, 3);
  EXPECT_EQ(r2.buffered(), 0u);
}

TEST(FrameReader, ErrorIsSticky) {
  FrameReader r(1000);
  std::string f = encode_frame(std::string(2000, 'a'));
  r.feed(f.data(), kFrameHeaderSize);  // the header alone is enough to refuse it
  std::string_view b;
  EXPECT_EQ(r.next(&b), FrameReader::kError);
  EXPECT_EQ(r.error(), FrameError::kOversized);
  r.feed(encode_frame("ok").data(), 22);
  EXPECT_EQ(r.next(&b), FrameReader::kError);
}

TEST(FrameReader, ChecksumAfterSplitDelivery) {
  std::string f = encode_frame("payload");
  f[kFrameHeaderSize + 2] ^= 4;
  FrameReader r;
  r.feed(f.data(), 10);
  std::string_view b;
  EXPECT_EQ(r.next(&b), FrameReader::kNeedMore);
  r.feed(f.data() + 10, f.size() - 10);
  EXPECT_EQ(r.next(&b), FrameReader::kError);
  EXPECT_EQ(r.error(), FrameError::kBadChecksum);
}

// ---- msgpack -------------------------------------------------------------------

TEST(Msgpack, WellFormedAcceptsValid) {
  std::string s = pack_map_with([](Packer& pk) {
    pack_str(pk, "a");
    pk.pack_array(3);
    pk.pack_int(-5);
    pk.pack_double(1.5);
    pack_bin(pk, "xyz");
    pack_str(pk, "b");
    pk.pack_nil();
  }, 2);
  EXPECT_TRUE(msgpack_well_formed(s.data(), s.size()));
  auto oh = unpack_untrusted(s.data(), s.size());
  EXPECT_EQ(as_array(need_field(oh.get(), "a"), "a").via.array.size, 3u);
}

TEST(Msgpack, GarbageIsRejected) {
  const char* bad[] = {"", "\xc1", "\x92\x01", "\xdd\xff\xff\xff\xff", "\xdb\x00\x00\x10\x00" "abc", "\x01\x02"};
  size_t lens[] = {0, 1, 2, 5, 8, 2};
  for (int i = 0; i < 6; i++) {
    EXPECT_FALSE(msgpack_well_formed(bad[i], lens[i])) << i;
    EXPECT_THROW(unpack_untrusted(bad[i], lens[i]), BadMessage) << i;
  }
}

TEST(Msgpack, ContainerCountsBoundedByBytes) {
  // 64 nested arrays each claiming 2^32-1 elements in a few hundred bytes:
  // refused without msgpack-c ever allocating their slots.
  std::string s;
  for (int i = 0; i < 64; i++) s += std::string("\xdd\xff\xff\xff\xff", 5);
  EXPECT_FALSE(msgpack_well_formed(s.data(), s.size()));
  std::string deep(40, '\x91');
  deep += '\x01';
  EXPECT_FALSE(msgpack_well_formed(deep.data(), deep.size(), 32));
  EXPECT_TRUE(msgpack_well_formed(deep.data(), deep.size(), 64));
}

TEST(Msgpack, WrongFieldTypes) {
  std::string s = pack_map_with([](Packer& pk) {
    pack_str(pk, "n");
    pack_str(pk, "not a number");
    pack_str(pk, "s");
    pk.pack_uint32(7);
  }, 2);
  auto oh = unpack_untrusted(s.data(), s.size());
  EXPECT_THROW(as_uint(need_field(oh.get(), "n"), "n"), BadMessage);
  EXPECT_THROW(as_str(need_field(oh.get(), "s"), "s"), BadMessage);
  EXPECT_THROW(need_field(oh.get(), "missing"), BadMessage);
  EXPECT_EQ(as_uint(need_field(oh.get(), "s"), "s"), 7u);
}

TEST(Msgpack, TensorRoundTrip) {
  std::vector<uint16_t> data(6, 0x3c00);
  Buf b;
  Packer pk(b);
  pack_tensor(pk, engine::DType::F16, {2, 3}, data.data(), data.size() * 2);
  auto oh = unpack_untrusted(b.s.data(), b.s.size());
  TensorView t = unpack_tensor(oh.get());
  EXPECT_EQ(t.dtype, engine::DType::F16);
  EXPECT_EQ(t.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(t.data.size(), 12u);
  EXPECT_EQ(std::memcmp(t.data.data(), data.data(), 12), 0);
}

TEST(Msgpack, TensorMismatchesAreRejected) {
  auto make = [](const char* dtype, std::vector<int64_t> shape, size_t nbytes) {
    Buf b;
    Packer pk(b);
    pk.pack_map(3);
    pack_str(pk, "dtype");
    pack_str(pk, dtype);
    pack_str(pk, "shape");
    pk.pack_array((uint32_t)shape.size());
    for (auto d : shape) pk.pack_int64(d);
    pack_str(pk, "data");
    pack_bin(pk, std::string(nbytes, '\0'));
    return b.s;
  };
  auto check = [](const std::string& s) {
    auto oh = unpack_untrusted(s.data(), s.size());
    return unpack_tensor(oh.get()).data.size();
  };
  EXPECT_EQ(check(make("bf16", {4, 2}, 16)), 16u);
  EXPECT_THROW(check(make("f32", {4, 2}, 16)), BadMessage);             // size mismatch
  EXPECT_THROW(check(make("f99", {4}, 16)), BadMessage);                // unknown dtype
  EXPECT_THROW(check(make("f32", {-1, 4}, 16)), BadMessage);            // negative dim
  EXPECT_THROW(check(make("f32", {1ll << 40, 1ll << 40}, 4)), BadMessage);  // overflow
  EXPECT_THROW(check(make("q8_0", {1, 31}, 34)), BadMessage);           // not a block multiple
  EXPECT_EQ(check(make("q8_0", {2, 32}, 68)), 68u);
}

// ---- envelopes -----------------------------------------------------------------

static Envelope decode_body(const std::string& body, msgpack::object_handle* keep) {
  *keep = unpack_untrusted(body.data(), body.size());
  return decode_envelope(keep->get());
}

TEST(Envelope, EveryTypeRoundTrips) {
  msgpack::object_handle oh;
  Envelope e = decode_body(request_prefix(42, "dht.find", 1500) + "\x80", &oh);
  EXPECT_EQ(e.type, MsgType::kRequest);
  EXPECT_EQ(e.id, 42u);
  EXPECT_EQ(e.method, "dht.find");
  EXPECT_EQ(e.deadline_ms, 1500u);
  EXPECT_EQ(e.body->type, msgpack::type::MAP);

  e = decode_body(response_prefix(7) + "\xc3", &oh);
  EXPECT_EQ(e.type, MsgType::kResponse);
  EXPECT_TRUE(e.body->via.boolean);

  e = decode_body(encode_error(9, ErrorCode::kNotFound, "nope"), &oh);
  EXPECT_EQ(e.type, MsgType::kError);
  EXPECT_EQ(e.code, ErrorCode::kNotFound);
  EXPECT_EQ(e.message, "nope");

  e = decode_body(part_prefix(3, true, true) + "\x01", &oh);
  EXPECT_EQ(e.type, MsgType::kReplyPart);
  EXPECT_TRUE(e.end);
  e = decode_body(part_prefix(3, false, false) + "\x01", &oh);
  EXPECT_EQ(e.type, MsgType::kPart);

  e = decode_body(notify_prefix("ping") + "\xc0", &oh);
  EXPECT_EQ(e.type, MsgType::kNotify);
  e = decode_body(encode_cancel(5), &oh);
  EXPECT_EQ(e.type, MsgType::kCancel);
  e = decode_body(encode_bye(ErrorCode::kRejected, "go away"), &oh);
  EXPECT_EQ(e.type, MsgType::kBye);

  Hello h{std::string(20, 'i'), kProtocolVersion, "swarm", "127.0.0.1:1", 123456789, std::string(32, 'k'),
          std::string(32, 'n')};
  e = decode_body(encode_hello(h), &oh);
  EXPECT_EQ(e.type, MsgType::kHello);
  EXPECT_EQ(e.hello.peer_id, h.peer_id);
  EXPECT_EQ(e.hello.key, h.key);
  EXPECT_EQ(e.hello.nonce, h.nonce);
  EXPECT_EQ(e.hello.swarm, "swarm");
  EXPECT_EQ(e.hello.listen, "127.0.0.1:1");
  EXPECT_EQ(e.hello.time_ms, 123456789);
  const std::string auth = encode_auth(std::string(64, 's'));  // e.sig points into it
  e = decode_body(auth, &oh);
  EXPECT_EQ(e.type, MsgType::kAuth);
  EXPECT_EQ(e.sig, std::string(64, 's'));
  EXPECT_THROW(decode_body(encode_auth(std::string(63, 's')), &oh), BadMessage);
}

TEST(Envelope, MalformedEnvelopes) {
  msgpack::object_handle oh;
  auto body = [](const std::function<void(Packer&)>& fill, uint32_t n) { return pack_map_with(fill, n); };
  // Not a map.
  EXPECT_THROW(decode_body("\x93\x01\x02\x03", &oh), BadMessage);
  // Unknown type.
  EXPECT_THROW(decode_body(body([](Packer& pk) { pack_str(pk, "type"); pack_str(pk, "evil"); }, 1), &oh), BadMessage);
  // Type is not a string.
  EXPECT_THROW(decode_body(body([](Packer& pk) { pack_str(pk, "type"); pk.pack_int(3); }, 1), &oh), BadMessage);
  // Request without an id / with a string id / without a body.
  EXPECT_THROW(decode_body(body([](Packer& pk) {
    pack_str(pk, "type"); pack_str(pk, "req");
    pack_str(pk, "method"); pack_str(pk, "x");
    pack_str(pk, "deadline"); pk.pack_uint32(1);
    pack_str(pk, "body"); pk.pack_nil();
  }, 4), &oh), BadMessage);
  EXPECT_THROW(decode_body(body([](Packer& pk) {
    pack_str(pk, "type"); pack_str(pk, "req");
    pack_str(pk, "id"); pack_str(pk, "1");
    pack_str(pk, "method"); pack_str(pk, "x");
    pack_str(pk, "deadline"); pk.pack_uint32(1);
    pack_str(pk, "body"); pk.pack_nil();
  }, 5), &oh), BadMessage);
  EXPECT_THROW(decode_body(body([](Packer& pk) {
    pack_str(pk, "type"); pack_str(pk, "req");
    pack_str(pk, "id"); pk.pack_uint32(1);
    pack_str(pk, "method"); pack_str(pk, "x");
    pack_str(pk, "deadline"); pk.pack_uint32(1);
  }, 4), &oh), BadMessage);
  // Negative id, method too long.
  EXPECT_THROW(decode_body(body([](Packer& pk) { pack_str(pk, "type"); pack_str(pk, "cancel"); pack_str(pk, "id"); pk.pack_int(-1); }, 2), &oh), BadMessage);
  EXPECT_THROW(decode_body(notify_prefix(std::string(kMaxMethod + 1, 'm')) + "\xc0", &oh), BadMessage);
  // Hello with a short peer id.
  Hello h{std::string(19, 'i'), kProtocolVersion, "s", "", 0, std::string(32, 'k'), std::string(32, 'n')};
  EXPECT_THROW(decode_body(encode_hello(h), &oh), BadMessage);
  // A body with trailing garbage after the envelope.
  EXPECT_THROW(decode_body(encode_cancel(1) + "\x01", &oh), BadMessage);
}
