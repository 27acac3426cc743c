// libFuzzer target: what a peer sends before it is authenticated. The
// swarm-key handshake (both roles) must refuse any 96 bytes it did not expect,
// and the rpc hello/auth decoding and identity check must refuse any body,
// without crashing or reading out of bounds.
//   byte 0 = 0: bytes 1..96 are a dialer's opening for a listener;
//   byte 0 = 1: bytes 1..96 are XORed into a real opening (reaches the MAC
//               check with near-valid input, and success when all zero);
//   byte 0 = 2: bytes 1..96 are a listener's answer for a dialer;
//   otherwise:  the rest is a hello or auth body, checked as Rpc checks it.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "net/envelope.h"
#include "net/handshake.h"
#include "net/identity.h"
#include "net/msg.h"

using namespace engine::net;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  SwarmKey k;
  k.fill(0x5a);
  const uint8_t mode = data[0];
  data++, size--;
  std::string reply;
  if (mode <= 2) {
    if (size < kPreambleBytes) return 0;
    if (mode == 0) {
      ChannelHandshake l(k, false);
      if (l.receive(data, &reply) && reply.size() != kPreambleBytes) __builtin_trap();
    } else if (mode == 1) {
      ChannelHandshake d(k, true), l(k, false);
      std::string open = d.opening();
      for (size_t i = 0; i < kPreambleBytes; i++) open[i] ^= (char)data[i];
      bool ok = l.receive((const uint8_t*)open.data(), &reply);
      bool zero = true;
      for (size_t i = 0; i < kPreambleBytes; i++) zero &= data[i] == 0;
      if (ok != zero) __builtin_trap();  // only the untouched opening passes
      if (ok && !d.receive((const uint8_t*)reply.data(), &reply)) __builtin_trap();
    } else {
      ChannelHandshake d(k, true);
      (void)d.receive(data, &reply);
    }
    return 0;
  }
  try {
    msgpack::object_handle oh = unpack_untrusted((const char*)data, size);
    Envelope e = decode_envelope(oh.get());
    if (e.type == MsgType::kHello) {
      PublicKey pk;
      std::memcpy(pk.data(), e.hello.key.data(), pk.size());  // 32 bytes, checked by the decoder
      NodeId id;
      NodeId::from_bytes(e.hello.peer_id, &id);
      (void)(peer_id_of(pk) == id);
      std::string t = auth_transcript(true, e.hello.swarm, e.hello.nonce, std::string(32, 'n'), e.hello.key,
                                      std::string(32, 'k'), "");
      (void)verify_signature(pk, t, std::string(64, 's'));
    } else if (e.type == MsgType::kAuth) {
      PublicKey pk;
      pk.fill(7);
      (void)verify_signature(pk, "transcript", e.sig);
    }
  } catch (const BadMessage&) {
  }
  return 0;
}
