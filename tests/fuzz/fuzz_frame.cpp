// libFuzzer target: everything a peer's bytes go through before a handler
// sees them must refuse any input cleanly (FrameReader errors, BadMessage),
// never crash, read out of bounds, or allocate without bound.
//   first byte even: the input is a byte stream, fed to the frame reader in
//                    chunks whose sizes come from the input itself;
//   first byte odd:  the rest is a frame body (msgpack), decoded directly,
//                    so the fuzzer need not forge checksums to reach it.
#include <cstddef>
#include <cstdint>

#include "net/envelope.h"
#include "net/frame.h"
#include "net/hidden_wire.h"
#include "net/msg.h"

using namespace engine::net;

static void decode_body(const char* p, size_t n) {
  try {
    msgpack::object_handle oh = unpack_untrusted(p, n);
    Envelope e = decode_envelope(oh.get());
    if (e.body) {
      // What handlers do with bodies: tensors, typed fields, rendering.
      try {
        (void)unpack_tensor(*e.body);
      } catch (const BadMessage&) {
      }
      // Hidden states and batches as block servers read them (a small width, so
      // the fuzzer reaches the conversions).
      for (const char* name : {"hidden", "grad", "prompts"}) {
        auto* f = find_field(*e.body, name);
        if (!f) continue;
        try {
          TensorView t = unpack_tensor(*f);
          std::vector<float> h;
          int64_t n = 0;
          try {
            unpack_hidden(t, 4, 2048, h, &n);
          } catch (const BadMessage&) {
          }
          (void)unpack_batch(t, 4, 2048);
        } catch (const BadMessage&) {
        }
      }
      if (auto* f = find_field(*e.body, "key")) (void)as_bytes(*f, "key");
      (void)object_to_text(*e.body, 512);
      (void)pack_object(*e.body);
    }
  } catch (const BadMessage&) {
  }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if (data[0] & 1) {
    decode_body((const char*)data + 1, size - 1);
    return 0;
  }
  FrameReader reader(1 << 16);
  size_t off = 1;
  uint8_t step = data[0] | 1;
  while (off < size) {
    size_t n = std::min<size_t>(size - off, step);
    reader.feed(data + off, n);
    off += n;
    step = (uint8_t)(step * 7 + 3);
    std::string_view body;
    FrameReader::Result r;
    while ((r = reader.next(&body)) == FrameReader::kFrame) decode_body(body.data(), body.size());
    if (r == FrameReader::kError) break;
  }
  std::string_view body;
  size_t used;
  (void)decode_frame(data, size, 1 << 16, &body, &used);
  return 0;
}
