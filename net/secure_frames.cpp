#include "net/secure_frames.h"

#include <sodium.h>

#include <cstring>

namespace engine::net {

static void nonce_of(uint64_t seq, uint8_t out[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES]) {
  std::memset(out, 0, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  for (int i = 0; i < 8; i++) out[i] = (uint8_t)(seq >> (8 * i));
}

void seal_record(const ChannelKey& key, uint64_t seq, std::string_view a, std::string_view b, std::string_view c,
                 uint8_t* out) {
  const size_t n = a.size() + b.size() + c.size();
  out[0] = (uint8_t)(n >> 24), out[1] = (uint8_t)(n >> 16), out[2] = (uint8_t)(n >> 8), out[3] = (uint8_t)n;
  uint8_t* body = out + kSealHeaderBytes;
  if (!a.empty()) std::memcpy(body, a.data(), a.size());
  if (!b.empty()) std::memcpy(body + a.size(), b.data(), b.size());
  if (!c.empty()) std::memcpy(body + a.size() + b.size(), c.data(), c.size());
  uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
  nonce_of(seq, nonce);
  crypto_aead_xchacha20poly1305_ietf_encrypt_detached(body, body + n, nullptr, body, n, out, kSealHeaderBytes,
                                                      nullptr, nonce, key.data());
}

uint32_t sealed_length(const uint8_t* h) {
  return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | (uint32_t)h[3];
}

bool open_record(const ChannelKey& key, uint64_t seq, uint8_t* p, size_t n) {
  uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
  nonce_of(seq, nonce);
  uint8_t* body = p + kSealHeaderBytes;
  // libsodium checks the tag before it decrypts anything.
  return crypto_aead_xchacha20poly1305_ietf_decrypt_detached(body, nullptr, body, n, body + n, p, kSealHeaderBytes,
                                                             nonce, key.data()) == 0;
}

}  // namespace engine::net
