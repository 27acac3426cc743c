#include "net/handshake.h"

#include <sodium.h>

#include <cstring>

#include "net/identity.h"

namespace engine::net {

static const char kDialTag[] = "engine-psk-v2 dial";
static const char kListenTag[] = "engine-psk-v2 listen";
static const char kKeyTag[] = "engine-psk-v2 key";

// BLAKE2b-256 keyed with the swarm key over the concatenation of parts.
static std::array<uint8_t, 32> keyed_hash(const SwarmKey& k, std::initializer_list<std::string_view> parts) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, k.data(), k.size(), 32);
  for (std::string_view p : parts) crypto_generichash_update(&st, (const uint8_t*)p.data(), p.size());
  std::array<uint8_t, 32> out;
  crypto_generichash_final(&st, out.data(), out.size());
  return out;
}

static std::string_view sv(const uint8_t* p, size_t n) { return std::string_view((const char*)p, n); }

ChannelHandshake::ChannelHandshake(const SwarmKey& psk, bool dialer) : psk_(psk), dialer_(dialer) {
  crypto_init();
  crypto_kx_keypair(kx_pk_.data(), kx_sk_.data());
  uint8_t nonce[kNonceBytes];
  randombytes_buf(nonce, sizeof nonce);
  mine_.assign((const char*)nonce, sizeof nonce);
  mine_.append((const char*)kx_pk_.data(), kx_pk_.size());
  if (dialer_) {
    auto mac = keyed_hash(psk_, {kDialTag, mine_});
    mine_.append((const char*)mac.data(), mac.size());
  }
}

ChannelHandshake::~ChannelHandshake() {
  sodium_memzero(kx_sk_.data(), kx_sk_.size());
  sodium_memzero(psk_.data(), psk_.size());
}

bool ChannelHandshake::receive(const uint8_t* msg, std::string* reply) {
  if (done_) return false;
  std::string_view body = sv(msg, 64), mac = sv(msg + 64, 32);
  if (!dialer_) {
    auto want = keyed_hash(psk_, {kDialTag, body});
    if (sodium_memcmp(want.data(), mac.data(), 32) != 0) return false;
    std::string dial(sv(msg, kPreambleBytes));
    auto mine_mac = keyed_hash(psk_, {kListenTag, dial, mine_});
    mine_.append((const char*)mine_mac.data(), mine_mac.size());
    if (!derive(dial, mine_)) return false;
    *reply = mine_;
    return true;
  }
  auto want = keyed_hash(psk_, {kListenTag, mine_, body});
  if (sodium_memcmp(want.data(), mac.data(), 32) != 0) return false;
  return derive(mine_, std::string(sv(msg, kPreambleBytes)));
}

bool ChannelHandshake::derive(const std::string& dial_msg, const std::string& listen_msg) {
  const uint8_t* peer_pk = (const uint8_t*)(dialer_ ? listen_msg : dial_msg).data() + kNonceBytes;
  uint8_t rx[crypto_kx_SESSIONKEYBYTES], tx[crypto_kx_SESSIONKEYBYTES];
  int rc = dialer_ ? crypto_kx_client_session_keys(rx, tx, kx_pk_.data(), kx_sk_.data(), peer_pk)
                   : crypto_kx_server_session_keys(rx, tx, kx_pk_.data(), kx_sk_.data(), peer_pk);
  if (rc != 0) return false;  // a degenerate public key
  uint8_t th[32];
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, sizeof th);
  crypto_generichash_update(&st, (const uint8_t*)dial_msg.data(), dial_msg.size());
  crypto_generichash_update(&st, (const uint8_t*)listen_msg.data(), listen_msg.size());
  crypto_generichash_final(&st, th, sizeof th);
  keys_.transcript.assign((const char*)th, sizeof th);
  keys_.send = keyed_hash(psk_, {kKeyTag, sv(tx, sizeof tx), keys_.transcript});
  keys_.recv = keyed_hash(psk_, {kKeyTag, sv(rx, sizeof rx), keys_.transcript});
  sodium_memzero(rx, sizeof rx);
  sodium_memzero(tx, sizeof tx);
  sodium_memzero(kx_sk_.data(), kx_sk_.size());
  done_ = true;
  return true;
}

std::string auth_transcript(bool signer_dialed, std::string_view swarm, std::string_view dialer_nonce,
                            std::string_view listener_nonce, std::string_view dialer_pk,
                            std::string_view listener_pk, std::string_view channel_transcript) {
  // Fixed-size fields, and the one variable one (swarm) length-prefixed, so no
  // two different inputs give the same bytes.
  std::string t = "engine-auth-v2";
  t += signer_dialed ? 'D' : 'L';
  uint8_t n[4] = {(uint8_t)(swarm.size() >> 24), (uint8_t)(swarm.size() >> 16), (uint8_t)(swarm.size() >> 8),
                  (uint8_t)swarm.size()};
  t.append((const char*)n, 4);
  t += swarm;
  for (std::string_view p : {dialer_nonce, listener_nonce, dialer_pk, listener_pk, channel_transcript}) {
    t += (char)p.size();
    t += p;
  }
  return t;
}

}  // namespace engine::net
