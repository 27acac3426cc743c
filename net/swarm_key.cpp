#include "net/swarm_key.h"

#include <sodium.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "core/io.h"
#include "net/identity.h"

namespace engine::net {

static const char kMagic[] = "engine-swarm-key-v1\n";
static constexpr size_t kMagicLen = sizeof kMagic - 1;
static constexpr size_t kFileBytes = kMagicLen + 64 + 1;

SwarmKey load_swarm_key(const std::string& path) {
  crypto_init();
  std::string buf = read_private_file(path, kFileBytes, "swarm key");
  SwarmKey k{};
  size_t got = 0;
  const bool ok = buf.size() == kFileBytes && std::memcmp(buf.data(), kMagic, kMagicLen) == 0 &&
                  buf[kFileBytes - 1] == '\n' &&
                  sodium_hex2bin(k.data(), k.size(), buf.data() + kMagicLen, 64, nullptr, &got, nullptr) == 0 &&
                  got == k.size();
  sodium_memzero(buf.data(), buf.size());
  if (!ok)
    throw Error("swarm key: " + path + " is not an engine swarm key file (make one with: engine swarm-key -o FILE)");
  return k;
}

void write_swarm_key(const std::string& path, bool force) {
  crypto_init();
  struct stat st {};
  if (!force && ::stat(path.c_str(), &st) == 0)
    throw Error("swarm key: " + path + " exists; pass --force to replace it");
  SwarmKey k;
  randombytes_buf(k.data(), k.size());
  char hex[65];
  sodium_bin2hex(hex, sizeof hex, k.data(), k.size());
  std::string bytes = std::string(kMagic) + std::string(hex, 64) + "\n";
  sodium_memzero(hex, sizeof hex);
  sodium_memzero(k.data(), k.size());
  write_private_file_atomic(path, bytes, "swarm key");
  sodium_memzero(bytes.data(), bytes.size());
}

}  // namespace engine::net
