// The two handshakes a connection goes through, as pure functions and state
// (no sockets), so they are easy to test and fuzz.
//
// 1. Swarm-key handshake (private swarms only, before any frame): each side
//    sends 96 raw bytes, nonce(32) | X25519 public key(32) | MAC(32), the MAC
//    keyed with the swarm key. The dialer speaks first; the listener answers
//    only once the dialer's MAC verifies, and its MAC also covers the dialer's
//    message, so neither side's bytes can be replayed into a working session.
//    Both then derive one key per direction from the X25519 exchange, the
//    swarm key and the transcript (docs/protocol.md §3).
// 2. Identity proof (every swarm, inside the rpc hello): each side signs
//    auth_transcript() with its Ed25519 key; see net/rpc.cpp.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "net/swarm_key.h"

namespace engine::net {

constexpr size_t kPreambleBytes = 96;
constexpr size_t kNonceBytes = 32;
using ChannelKey = std::array<uint8_t, 32>;

struct ChannelKeys {
  ChannelKey send{}, recv{};
  std::string transcript;  // 32-byte hash of both preambles; the identity proof signs it
};

class ChannelHandshake {
 public:
  ChannelHandshake(const SwarmKey& psk, bool dialer);
  ~ChannelHandshake();
  ChannelHandshake(const ChannelHandshake&) = delete;
  ChannelHandshake& operator=(const ChannelHandshake&) = delete;

  // The dialer's first message (sent on connect); "" for the listener.
  std::string opening() const { return dialer_ ? mine_ : std::string(); }
  // Takes the peer's kPreambleBytes. False when it does not prove the swarm key
  // (the connection must then be closed without a word). On success the
  // listener gets its answer in *reply and keys() is valid.
  bool receive(const uint8_t* msg, std::string* reply);
  bool done() const { return done_; }
  const ChannelKeys& keys() const { return keys_; }

 private:
  bool derive(const std::string& dial_msg, const std::string& listen_msg);
  SwarmKey psk_;
  bool dialer_;
  bool done_ = false;
  std::array<uint8_t, 32> kx_pk_{}, kx_sk_{};
  std::string mine_;  // our 96-byte message (listener: built once the dialer's verified)
  ChannelKeys keys_;
};

// What a side signs to prove its identity on one connection: binds the role
// of the signer, the swarm, both hello nonces, both public keys and the
// swarm-key transcript ("" in open swarms).
std::string auth_transcript(bool signer_dialed, std::string_view swarm, std::string_view dialer_nonce,
                            std::string_view listener_nonce, std::string_view dialer_pk,
                            std::string_view listener_pk, std::string_view channel_transcript);

}  // namespace engine::net
