// The network side of a training peer on its own thread: one libuv loop with the
// peer's Rpc and DhtNode. The trainer's thread computes gradients (seconds of
// work) while this loop keeps answering the DHT, state downloads and averaging
// traffic. Everything net:: is touched only from the loop thread; the trainer
// hands work over with post() / run().
#pragma once
#include <uv.h>

#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "net/dht_node.h"
#include "net/rpc.h"

namespace engine::train {

class NetThread {
 public:
  // Listens on `listen` ("" = do not listen: client mode, outgoing calls only) and
  // starts the loop thread. The DHT is bootstrapped from initial_peers (empty: the
  // first node of a swarm). Error when the address cannot be bound or bootstrap fails.
  NetThread(const std::string& listen, const std::vector<std::string>& initial_peers, net::RpcOptions rpc_opts = {},
            net::DhtOptions dht_opts = {});
  ~NetThread();  // stops the DHT and the Rpc, joins the thread
  NetThread(const NetThread&) = delete;
  NetThread& operator=(const NetThread&) = delete;

  // Runs fn on the loop thread soon (thread-safe). Dropped once shutdown began.
  // An exception thrown by fn is printed and swallowed (the loop keeps serving).
  void post(std::function<void()> fn);
  // Runs fn on the loop thread and blocks the caller until fn's `done` is called
  // (from the loop), or timeout_ms passes (then returns false; `done` may still be
  // called later and is then ignored). Never call it from the loop thread (Error).
  // Objects created on the loop (Matchmaker, StateServer, ...) must be destroyed
  // there too, with run(), before the NetThread: its shutdown fails outstanding
  // calls, whose callbacks would otherwise reach them.
  bool run(const std::function<void(std::function<void()> done)>& fn, uint32_t timeout_ms);

  net::Rpc& rpc() { return *rpc_; }       // loop thread only
  net::DhtNode& dht() { return *dht_; }   // loop thread only
  const std::string& address() const { return address_; }  // "" in client mode
  net::NodeId id() const { return id_; }

 private:
  void loop_main(const std::string& listen, const std::vector<std::string>& peers, net::RpcOptions rpc_opts,
                 net::DhtOptions dht_opts, std::promise<std::string>& started);
  static void on_async(uv_async_t* a);
  void drain();
  void shut_down();
  void release_net();
  uv_loop_t loop_{};
  uv_async_t async_{};
  std::unique_ptr<net::Rpc> rpc_;
  std::unique_ptr<net::DhtNode> dht_;
  std::string address_;
  net::NodeId id_;
  std::mutex mu_;
  std::vector<std::function<void()>> queue_;
  bool stopping_ = false;  // under mu_; once set, nothing more is queued
  std::string failed_bootstrap_;  // loop thread
  std::thread thread_;
};

// Runs an asynchronous operation of the loop thread from another thread and waits
// for its single result (nullopt on timeout). `start` is copied into the loop's
// task, so a timeout here never leaves the loop holding references to the
// caller's stack frame.
template <class T>
std::optional<T> await(NetThread& net, uint32_t timeout_ms, std::function<void(std::function<void(T)>)> start) {
  auto slot = std::make_shared<std::optional<T>>();
  auto mu = std::make_shared<std::mutex>();
  const bool ok = net.run(
      [start, slot, mu](std::function<void()> done) {
        start([slot, mu, done](T v) {
          {
            std::lock_guard<std::mutex> lock(*mu);
            *slot = std::move(v);
          }
          done();
        });
      },
      timeout_ms);
  std::lock_guard<std::mutex> lock(*mu);
  if (!ok || !*slot) return std::nullopt;
  return std::move(**slot);
}

}  // namespace engine::train
