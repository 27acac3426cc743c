#include "web/net_metrics.h"

namespace engine::web {

void declare_net_metrics(Metrics& m) {
  m.gauge("engine_uptime_seconds", "seconds since the process started");
  m.counter("engine_rpc_calls_total", "RPC calls this process made");
  m.counter("engine_rpc_replies_total", "replies to this process's calls, by result (ok, error)");
  m.counter("engine_rpc_requests_total", "RPC requests this process received");
  m.counter("engine_rpc_violations_total", "peers cut off for breaking the protocol or its limits");
  m.gauge("engine_rpc_connections", "open RPC connections");
  m.counter("engine_rpc_connections_total", "RPC connections, by how they began (accepted, refused, opened)");
  m.counter("engine_rpc_received_bytes_total", "bytes received on RPC connections");
  m.counter("engine_rpc_sent_bytes_total", "bytes sent on RPC connections");
  m.gauge("engine_dht_contacts", "peers in the DHT routing table");
  m.gauge("engine_dht_records", "DHT keys this node stores for the swarm");
}

void export_net_metrics(Metrics& m, const net::Rpc& rpc, net::DhtNode* dht, double uptime_s) {
  const net::Rpc::Stats& s = rpc.stats();
  m.set("engine_uptime_seconds", uptime_s);
  m.set("engine_rpc_calls_total", (double)s.calls);
  m.set("engine_rpc_replies_total", (double)s.replies_ok, {{"result", "ok"}});
  m.set("engine_rpc_replies_total", (double)s.replies_err, {{"result", "error"}});
  m.set("engine_rpc_requests_total", (double)s.requests_in);
  m.set("engine_rpc_violations_total", (double)s.violations);
  m.set("engine_rpc_connections", (double)rpc.connection_count());
  m.set("engine_rpc_connections_total", (double)s.conns_accepted, {{"kind", "accepted"}});
  m.set("engine_rpc_connections_total", (double)s.conns_refused, {{"kind", "refused"}});
  m.set("engine_rpc_connections_total", (double)s.conns_opened, {{"kind", "opened"}});
  m.set("engine_rpc_received_bytes_total", (double)rpc.bytes_in());
  m.set("engine_rpc_sent_bytes_total", (double)rpc.bytes_out());
  if (dht) {
    m.set("engine_dht_contacts", (double)dht->table().size());
    m.set("engine_dht_records", (double)dht->storage().size());
  }
}

void declare_block_server_metrics(Metrics& m) {
  m.gauge("engine_blocks_served", "transformer blocks this server holds");
  m.gauge("engine_cache_tokens_left", "KV cache positions (of the whole span) still free");
  m.gauge("engine_inference_sessions_open", "open inference sessions");
  m.counter("engine_inference_sessions_total", "inference sessions opened");
  m.counter("engine_inference_steps_total", "inference steps served");
  m.counter("engine_forwards_total", "stateless forward passes served");
  m.counter("engine_backwards_total", "stateless backward passes served");
  m.counter("engine_block_errors_total", "block requests that failed");
}

void export_block_server_metrics(Metrics& m, const net::BlockServer* server) {
  if (!server) return;
  const net::BlockServer::Stats& s = server->stats();
  m.set("engine_blocks_served", (double)(server->last() - server->first()));
  m.set("engine_cache_tokens_left", (double)server->cache_tokens_left());
  m.set("engine_inference_sessions_open", (double)server->session_count());
  m.set("engine_inference_sessions_total", (double)s.opened);
  m.set("engine_inference_steps_total", (double)s.steps);
  m.set("engine_forwards_total", (double)s.forwards);
  m.set("engine_backwards_total", (double)s.backwards);
  m.set("engine_block_errors_total", (double)s.errors);
}

LoopTimer::LoopTimer(uv_loop_t* loop, uint64_t period_ms, std::function<void()> fn) : h_(new Handle) {
  h_->fn = std::move(fn);
  uv_timer_init(loop, &h_->timer);
  h_->timer.data = h_;
  uv_timer_start(&h_->timer, [](uv_timer_t* t) { ((Handle*)t->data)->fn(); }, period_ms, period_ms);
  uv_unref((uv_handle_t*)&h_->timer);
}

void LoopTimer::close() {
  if (!h_) return;
  uv_timer_stop(&h_->timer);
  uv_close((uv_handle_t*)&h_->timer, [](uv_handle_t* t) { delete (Handle*)t->data; });
  h_ = nullptr;
}

}  // namespace engine::web
