// What `--http ADDR` adds to a swarm process (engine dht, engine serve): an
// HTTP listener with the health page, its JSON and /metrics, a SwarmWatcher
// feeding the page, and the Metrics registry the process's loop exports into
// (web/net_metrics.h). engine api mounts the same pieces on its own server.
#pragma once
#include <string>

#include "web/http_server.h"
#include "web/metrics.h"
#include "web/swarm_watcher.h"

namespace engine::web {

class HealthService {
 public:
  // Declares the network metrics; nothing runs before start().
  HealthService(const std::string& listen, WatcherOptions watcher);
  ~HealthService();  // stops the listener, then the watcher
  // Binds (Error naming the address when it cannot) and starts the watcher.
  void start();
  std::string address() const { return http_.address(); }
  // "http://host:port/", with 127.0.0.1 for a wildcard listen address.
  std::string url() const;
  Metrics& metrics() { return metrics_; }

 private:
  Metrics metrics_;
  SwarmWatcher watcher_;
  HttpServer http_;
};

}  // namespace engine::web
