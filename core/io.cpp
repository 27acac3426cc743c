#include "core/io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace engine {

std::string read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw file_error(path, std::string("cannot open: ") + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw file_error(path, "read failed");
  return ss.str();
}

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw file_error(path, std::string("cannot create: ") + std::strerror(errno));
  bool ok = size == 0 || std::fwrite(data, 1, size, f) == size;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    std::remove(tmp.c_str());
    throw file_error(path, std::string("write failed: ") + std::strerror(e));
  }
}

void write_private_file_atomic(const std::string& path, const std::string& bytes, const char* what) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int w = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (w < 0) throw Error(std::string(what) + ": cannot create " + tmp + ": " + std::strerror(errno));
  const bool ok = ::write(w, bytes.data(), bytes.size()) == (ssize_t)bytes.size() && ::fsync(w) == 0;
  ::close(w);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    throw Error(std::string(what) + ": cannot write " + path + ": " + std::strerror(e));
  }
}

std::string read_private_file(const std::string& path, size_t max_bytes, const char* what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(std::string(what) + ": cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || (st.st_mode & 077) != 0) {
    ::close(fd);
    throw Error(std::string(what) + ": " + path + " is readable by others; chmod 600 it");
  }
  std::string out(max_bytes + 1, '\0');
  size_t got = 0;
  for (ssize_t n; got < out.size() && (n = ::read(fd, out.data() + got, out.size() - got)) > 0;) got += (size_t)n;
  ::close(fd);
  out.resize(got);
  return out;
}

}  // namespace engine
