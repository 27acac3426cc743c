// The loop thread: builds the Rpc and the DhtNode on the thread that will own
// them (so net objects are never touched from two threads, not even during
// construction), bootstraps, reports the outcome to the constructor, and then
// runs posted work until the destructor asks it to stop.
#include "train/net_thread.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <future>

#include "core/error.h"

namespace engine::train {

NetThread::NetThread(const std::string& listen, const std::vector<std::string>& initial_peers,
                     net::RpcOptions rpc_opts, net::DhtOptions dht_opts)
    : id_((rpc_opts.identity ? rpc_opts.identity
                             : (rpc_opts.identity = std::make_shared<const net::Identity>(net::Identity::generate())))
              ->id()) {
  uv_loop_init(&loop_);
  uv_async_init(&loop_, &async_, on_async);
  async_.data = this;
  std::promise<std::string> started;
  std::future<std::string> outcome = started.get_future();
  thread_ = std::thread([this, listen, initial_peers, rpc_opts, dht_opts, &started]() mutable {
    loop_main(listen, initial_peers, std::move(rpc_opts), std::move(dht_opts), started);
  });
  std::string err = outcome.get();
  if (!err.empty()) {
    thread_.join();  // the thread has already closed everything and left its loop
    uv_loop_close(&loop_);
    throw Error(err);
  }
}

NetThread::~NetThread() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!stopping_) {
      stopping_ = true;
      uv_async_send(&async_);
    }
  }
  if (thread_.joinable()) thread_.join();
  uv_loop_close(&loop_);
}

// ---- the loop thread --------------------------------------------------------------

void NetThread::loop_main(const std::string& listen, const std::vector<std::string>& peers, net::RpcOptions rpc_opts,
                          net::DhtOptions dht_opts, std::promise<std::string>& started) {
  // `started` lives on the constructor's stack: set it exactly once, then forget it.
  std::promise<std::string>* report = &started;
  auto tell = [&report](const std::string& err) {
    if (!report) return;
    report->set_value(err);
    report = nullptr;
  };
  try {
    rpc_ = std::make_unique<net::Rpc>(&loop_, std::move(rpc_opts));
    if (!listen.empty()) address_ = rpc_->listen(listen);
    dht_ = std::make_unique<net::DhtNode>(*rpc_, std::move(dht_opts));
  } catch (const std::exception& e) {
    shut_down();
    uv_run(&loop_, UV_RUN_DEFAULT);
    release_net();
    tell(e.what());
    return;
  }
  dht_->bootstrap(peers, [this, &peers, &tell](size_t known, const std::string& err) {
    if (!peers.empty() && known == 0) {
      shut_down();
      failed_bootstrap_ = "DHT bootstrap failed: " + err;
      return;
    }
    dht_->start_maintenance();
    tell("");
  });
  uv_run(&loop_, UV_RUN_DEFAULT);  // returns once shut_down() closed every handle
  release_net();
  tell(failed_bootstrap_);  // no-op after a successful start
}

void NetThread::on_async(uv_async_t* a) { ((NetThread*)a->data)->drain(); }

// Runs what was posted; on the destructor's signal, shuts the network down.
void NetThread::drain() {
  std::vector<std::function<void()>> work;
  bool stop;
  {
    std::lock_guard<std::mutex> lk(mu_);
    work.swap(queue_);
    stop = stopping_;
  }
  for (auto& fn : work) {
    try {
      fn();
    } catch (const std::exception& e) {
      // A task's failure must not take the loop (and every peer's connection) down.
      std::fprintf(stderr, "train: network task failed: %s\n", e.what());
    }
  }
  if (stop) shut_down();
}

// Stops the DHT's timers and the Rpc (outstanding calls fail with "unavailable",
// their callbacks run now), and closes the async handle: the loop then ends once
// libuv has released the connections.
void NetThread::shut_down() {
  if (dht_) dht_->stop();
  if (rpc_) rpc_->close();
  std::lock_guard<std::mutex> lk(mu_);
  stopping_ = true;  // post() sends nothing to a closing handle
  queue_.clear();
  if (!uv_is_closing((uv_handle_t*)&async_)) uv_close((uv_handle_t*)&async_, nullptr);
}

// Destroys the net objects on the loop thread and lets libuv finish whatever
// their destructors closed.
void NetThread::release_net() {
  dht_.reset();
  rpc_.reset();
  uv_run(&loop_, UV_RUN_DEFAULT);
}

// ---- any thread ---------------------------------------------------------------------

void NetThread::post(std::function<void()> fn) {
  std::lock_guard<std::mutex> lk(mu_);
  if (stopping_) return;
  queue_.push_back(std::move(fn));
  uv_async_send(&async_);  // under the lock: the loop closes the handle only under it too
}

bool NetThread::run(const std::function<void(std::function<void()> done)>& fn, uint32_t timeout_ms) {
  if (std::this_thread::get_id() == thread_.get_id())
    throw Error("NetThread::run called from the loop thread (it would wait for itself)");
  struct Waiter {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  auto w = std::make_shared<Waiter>();  // outlives a timed-out caller
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) return false;
    queue_.push_back([fn, w] {
      fn([w] {
        std::lock_guard<std::mutex> l(w->mu);
        w->done = true;
        w->cv.notify_all();
      });
    });
    uv_async_send(&async_);
  }
  std::unique_lock<std::mutex> lk(w->mu);
  return w->cv.wait_for(lk, std::chrono::milliseconds(timeout_ms), [&] { return w->done; });
}

}  // namespace engine::train
