#include "net/swarm_key.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "net/identity.h"

namespace engine::net {

static const char kMagic[] = "engine-swarm-key-v1\n";
static constexpr size_t kMagicLen = sizeof kMagic - 1;
static constexpr size_t kFileBytes = kMagicLen + 64 + 1;

SwarmKey load_swarm_key(const std::string& path) {
  crypto_init();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error("swarm key: cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || (st.st_mode & 077) != 0) {
    ::close(fd);
    throw Error("swarm key: " + path + " is readable by others; chmod 600 it");
  }
  char buf[kFileBytes + 1];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  SwarmKey k{};
  size_t got = 0;
  if (n != (ssize_t)kFileBytes || std::memcmp(buf, kMagic, kMagicLen) != 0 || buf[kFileBytes - 1] != '\n' ||
      sodium_hex2bin(k.data(), k.size(), buf + kMagicLen, 64, nullptr, &got, nullptr) != 0 || got != k.size()) {
    sodium_memzero(buf, sizeof buf);
    throw Error("swarm key: " + path + " is not an engine swarm key file (make one with: engine swarm-key -o FILE)");
  }
  sodium_memzero(buf, sizeof buf);
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
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  int w = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (w < 0) throw Error("swarm key: cannot create " + tmp + ": " + std::strerror(errno));
  const bool ok = ::write(w, bytes.data(), bytes.size()) == (ssize_t)bytes.size() && ::fsync(w) == 0;
  ::close(w);
  sodium_memzero(bytes.data(), bytes.size());
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    throw Error("swarm key: cannot write " + path + ": " + std::strerror(e));
  }
}

}  // namespace engine::net
