// The Prometheus metrics of a swarm process (docs/health.md lists them): the
// network (RPC, bytes, connections, DHT) for every process, and a block
// server's. The libuv loop owns these statistics, so the loop copies them into
// the thread-safe Metrics registry on a timer (LoopTimer) and a scrape only
// reads the registry.
#pragma once
#include <uv.h>

#include <functional>

#include "net/block_server.h"
#include "net/dht_node.h"
#include "net/rpc.h"
#include "web/metrics.h"

namespace engine::web {

void declare_net_metrics(Metrics& m);
// Loop thread. dht may be null (a process without a DHT node).
void export_net_metrics(Metrics& m, const net::Rpc& rpc, net::DhtNode* dht, double uptime_s);

void declare_block_server_metrics(Metrics& m);
// Loop thread. server may be null (not loaded yet: its metrics stay as they were).
void export_block_server_metrics(Metrics& m, const net::BlockServer* server);

// Calls fn on the loop every period_ms. Unreferenced, so it never keeps the loop
// alive; the handle is closed by close() or the destructor (on the loop's thread,
// before the loop's last uv_run).
class LoopTimer {
 public:
  LoopTimer(uv_loop_t* loop, uint64_t period_ms, std::function<void()> fn);
  ~LoopTimer() { close(); }
  LoopTimer(const LoopTimer&) = delete;
  LoopTimer& operator=(const LoopTimer&) = delete;
  void close();

 private:
  struct Handle {
    uv_timer_t timer;
    std::function<void()> fn;
  };
  Handle* h_;
};

}  // namespace engine::web
