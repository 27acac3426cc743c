// Sealed records: the frame format of private swarms, once the swarm-key
// handshake (net/handshake.h) has given each direction its own key.
//
//   offset size  field
//   0      4     body length n, big-endian (checked against the frame limit
//                before anything is allocated)
//   4      n     body, encrypted with XChaCha20 (libsodium
//                crypto_aead_xchacha20poly1305_ietf)
//   4+n    16    Poly1305 tag over the length field (associated data) and the
//                ciphertext
//
// The 24-byte nonce is the record's sequence number in this direction (64-bit
// little-endian, then zeros): never sent, so a dropped, replayed or reordered
// record fails to open, and a key is never used twice with one nonce.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "net/handshake.h"

namespace engine::net {

constexpr size_t kSealHeaderBytes = 4;
constexpr size_t kSealTagBytes = 16;

inline size_t sealed_size(size_t body) { return kSealHeaderBytes + body + kSealTagBytes; }

// Writes the record for body = a + b + c into out (sealed_size bytes): the
// pieces are gathered once into out and encrypted there in place.
void seal_record(const ChannelKey& key, uint64_t seq, std::string_view a, std::string_view b, std::string_view c,
                 uint8_t* out);

// Body length from a record header.
uint32_t sealed_length(const uint8_t* header);

// Checks and decrypts, in place, one whole record at p (sealed_size(n) bytes,
// n = sealed_length(p)); the body is then at p + kSealHeaderBytes. False if it
// was tampered with, replayed or sealed with another key.
bool open_record(const ChannelKey& key, uint64_t seq, uint8_t* p, size_t n);

}  // namespace engine::net
