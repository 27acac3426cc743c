#include "net/identity.h"

#include <sodium.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "core/io.h"

namespace engine::net {

namespace {
constexpr char kKeyMagic[4] = {'E', 'I', 'D', '1'};
constexpr size_t kKeyFileBytes = sizeof kKeyMagic + crypto_sign_SECRETKEYBYTES;
constexpr char kIdTag[] = "engine peer id v1";
}  // namespace

void crypto_init() {
  static const int rc = sodium_init();  // 0 first time, 1 when already done
  if (rc < 0) throw Error("libsodium failed to initialise");
}

NodeId peer_id_of(const PublicKey& pk) {
  crypto_init();
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, 32);
  crypto_generichash_update(&st, (const unsigned char*)kIdTag, sizeof kIdTag - 1);
  crypto_generichash_update(&st, pk.data(), pk.size());
  uint8_t h[32];
  crypto_generichash_final(&st, h, sizeof h);
  NodeId id;
  std::memcpy(id.b.data(), h, NodeId::kBytes);
  return id;
}

bool verify_signature(const PublicKey& pk, std::string_view message, std::string_view signature) {
  if (signature.size() != kSignatureBytes) return false;
  crypto_init();
  return crypto_sign_verify_detached((const unsigned char*)signature.data(), (const unsigned char*)message.data(),
                                     message.size(), pk.data()) == 0;
}

Identity Identity::generate() {
  crypto_init();
  Identity me;
  crypto_sign_keypair(me.pk_.data(), me.sk_.data());
  me.id_ = peer_id_of(me.pk_);
  return me;
}

Identity Identity::load_or_create(const std::string& path) {
  crypto_init();
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) {
    Identity me = generate();
    std::string bytes(kKeyMagic, sizeof kKeyMagic);
    bytes.append((const char*)me.sk_.data(), me.sk_.size());
    write_private_file_atomic(path, bytes, "identity");
    sodium_memzero(bytes.data(), bytes.size());
    return me;
  }
  std::string buf = read_private_file(path, kKeyFileBytes, "identity");
  if (buf.size() != kKeyFileBytes || std::memcmp(buf.data(), kKeyMagic, sizeof kKeyMagic) != 0) {
    sodium_memzero(buf.data(), buf.size());
    throw Error("identity: " + path + " is not an engine identity file");
  }
  Identity me;
  std::memcpy(me.sk_.data(), buf.data() + sizeof kKeyMagic, me.sk_.size());
  sodium_memzero(buf.data(), buf.size());
  // The secret key's second half is the public key; check it matches the seed.
  PublicKey from_seed;
  std::array<uint8_t, 64> sk2;
  crypto_sign_seed_keypair(from_seed.data(), sk2.data(), me.sk_.data());
  sodium_memzero(sk2.data(), sk2.size());
  if (std::memcmp(from_seed.data(), me.sk_.data() + 32, 32) != 0)
    throw Error("identity: " + path + " is corrupt (public key does not match the seed)");
  me.pk_ = from_seed;
  me.id_ = peer_id_of(me.pk_);
  return me;
}

std::string Identity::sign(std::string_view message) const {
  unsigned char sig[crypto_sign_BYTES];
  crypto_sign_detached(sig, nullptr, (const unsigned char*)message.data(), message.size(), sk_.data());
  return std::string((const char*)sig, sizeof sig);
}

}  // namespace engine::net
