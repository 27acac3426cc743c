// SIGINT / SIGTERM as libuv events, for the long-running commands (dht, serve):
// the first signal calls `on_signal(signum)` on the loop thread; close() releases
// the handles so the loop can end (call it once the shutdown is under way).
#pragma once
#include <uv.h>

#include <functional>
#include <memory>
#include <vector>

namespace engine::net {

class ShutdownSignals {
 public:
  ShutdownSignals(uv_loop_t* loop, std::function<void(int signum)> on_signal);
  ShutdownSignals(const ShutdownSignals&) = delete;
  ShutdownSignals& operator=(const ShutdownSignals&) = delete;
  void close();  // idempotent

 private:
  struct Handle {
    uv_signal_t h;
    ShutdownSignals* owner;
    int signum;
  };
  std::function<void(int)> on_signal_;
  std::vector<std::unique_ptr<Handle>> handles_;
  bool closed_ = false;
};

}  // namespace engine::net
