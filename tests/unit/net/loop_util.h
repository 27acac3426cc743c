// Helpers for tests that drive libuv loops: run until a condition holds (or a
// bounded time passes), and a blocking raw-socket peer for hostile behaviour.
#pragma once
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <chrono>
#include <functional>
#include <string>

#include "net/address.h"

namespace nettest {

// Runs the loop until pred() is true; false if timeout_ms passed first.
inline bool run_until(uv_loop_t* loop, const std::function<bool()>& pred, int timeout_ms = 10000) {
  uv_timer_t tick;  // keeps uv_run(ONCE) from blocking forever
  uv_timer_init(loop, &tick);
  uv_timer_start(&tick, [](uv_timer_t*) {}, 5, 5);
  auto t0 = std::chrono::steady_clock::now();
  bool ok = false;
  for (;;) {
    if (pred()) {
      ok = true;
      break;
    }
    if (std::chrono::steady_clock::now() - t0 > std::chrono::milliseconds(timeout_ms)) break;
    uv_run(loop, UV_RUN_ONCE);
  }
  uv_close((uv_handle_t*)&tick, nullptr);
  uv_run(loop, UV_RUN_NOWAIT);
  return ok;
}

// Lets every closing handle finish, then closes the loop.
inline void drain_loop(uv_loop_t* loop) {
  for (int i = 0; i < 100 && uv_loop_alive(loop); i++) uv_run(loop, UV_RUN_NOWAIT);
  uv_run(loop, UV_RUN_DEFAULT);
}

// A plain blocking TCP socket, to play a broken or hostile peer.
struct RawPeer {
  int fd = -1;
  // from_ip: a local source address (another 127.x.y.z plays another host).
  explicit RawPeer(const std::string& addr, const std::string& from_ip = "") {
    auto a = engine::net::Address::parse(addr);
    fd = ::socket(a.family(), SOCK_STREAM, 0);
    if (!from_ip.empty()) {
      auto src = engine::net::Address::parse(from_ip + ":0");
      socklen_t sl = src.family() == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
      if (::bind(fd, src.sa(), sl) != 0) {
        ::close(fd);
        fd = -1;
        return;
      }
    }
    socklen_t len = a.family() == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    if (::connect(fd, a.sa(), len) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ~RawPeer() {
    if (fd >= 0) ::close(fd);
  }
  // Best effort; false once the peer has closed us.
  bool send(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += (size_t)n;
    }
    return true;
  }
  // True once the other side closed (EOF or reset), reading and discarding data.
  bool closed_by_peer() {
    char buf[65536];
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 0) <= 0) return false;
      ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0) return true;
      if (n < 0) return errno != EAGAIN && errno != EWOULDBLOCK;
    }
  }
  // Appends whatever has arrived to *got, without blocking; false once closed.
  bool read_some(std::string* got) {
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0) return false;
      if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
      got->append(buf, (size_t)n);
    }
  }
};

}  // namespace nettest
