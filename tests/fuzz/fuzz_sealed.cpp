// libFuzzer target: the sealed-record decoder of private swarms
// (net/secure_frames.h via FrameReader). Random bytes and mutated valid
// records must be refused cleanly: never crash, never hand out a body that
// was not sealed with the key, never buffer past the frame limit.
//   byte 0 even: the rest is a raw byte stream, fed in input-sized chunks;
//   byte 0 odd:  the rest is split in two: plaintext bodies sealed as records
//                (so the fuzzer sees valid ciphertext), then bytes XORed into
//                that stream; only an all-zero mask may open every record.
#include <cstddef>
#include <cstdint>
#include <string>

#include "net/frame.h"
#include "net/secure_frames.h"

using namespace engine::net;

static constexpr size_t kLimit = 1 << 16;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ChannelKey key;
  key.fill(0x33);
  FrameReader reader(kLimit);
  reader.set_opener(key);
  std::string_view body;
  if (!(data[0] & 1)) {
    size_t off = 1;
    uint8_t step = data[0] | 1;
    while (off < size) {
      size_t n = std::min<size_t>(size - off, step);
      reader.feed(data + off, n);
      off += n;
      step = (uint8_t)(step * 7 + 3);
      FrameReader::Result r;
      while ((r = reader.next(&body)) == FrameReader::kFrame)
        if (body.size() > kLimit) __builtin_trap();
      if (r == FrameReader::kError) break;
      if (reader.buffered() > sealed_size(kLimit)) __builtin_trap();
    }
    return 0;
  }
  const size_t half = (size - 1) / 2;
  std::string_view plain((const char*)data + 1, half);
  const uint8_t* mask = data + 1 + half;
  const size_t mask_n = size - 1 - half;
  // Records of up to 61 bytes each, cut from the plaintext.
  std::string stream;
  uint64_t seq = 0;
  for (size_t off = 0; off < plain.size(); off += 61, seq++) {
    std::string_view piece = plain.substr(off, 61);
    std::string rec(sealed_size(piece.size()), '\0');
    seal_record(key, seq, piece, {}, {}, (uint8_t*)rec.data());
    stream += rec;
  }
  bool touched = false;
  for (size_t i = 0; i < mask_n && i < stream.size(); i++) {
    stream[i] ^= (char)mask[i];
    touched |= mask[i] != 0;
  }
  reader.feed(stream.data(), stream.size());
  std::string got;
  FrameReader::Result r;
  while ((r = reader.next(&body)) == FrameReader::kFrame) got += body;
  if (!touched && (r != FrameReader::kNeedMore || got != plain)) __builtin_trap();
  if (touched && got.size() == plain.size() && r == FrameReader::kNeedMore && got != plain) __builtin_trap();
  return 0;
}
