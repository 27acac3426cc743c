#include "web/swarm_watcher.h"

#include <algorithm>
#include <chrono>

#include "train/net_thread.h"

namespace engine::web {

namespace {

using Done = std::function<void(std::shared_ptr<SwarmSnapshot>)>;

// One crawl on the loop thread: both indexes, then every model's block records and
// every run's progress, all lookups in flight at once; done() after the last answer.
void crawl(net::DhtNode& dht, Done done) {
  struct State {
    int pending = 2;  // the two index lookups; each adds its follow-ups
    std::shared_ptr<SwarmSnapshot> snap = std::make_shared<SwarmSnapshot>();
    net::DhtNode* dht;
    Done done;
    void finish_one() {
      if (--pending > 0) return;
      std::sort(snap->models.begin(), snap->models.end(),
                [](auto& a, auto& b) { return a.entry.name < b.entry.name; });
      std::sort(snap->runs.begin(), snap->runs.end(), [](auto& a, auto& b) { return a.entry.name < b.entry.name; });
      snap->time = dht->now();
      snap->status = "ok";
      done(snap);
    }
  };
  auto st = std::make_shared<State>();
  st->dht = &dht;
  st->done = std::move(done);
  net::fetch_models(dht, [st](std::vector<net::ModelEntry> models) {
    for (auto& m : models) {
      st->pending++;
      const int64_t blocks = std::min(m.blocks, kMaxCrawlBlocks);
      net::fetch_servers(*st->dht, m.name, blocks, [st, m, blocks](net::ServerMap servers) {
        SwarmSnapshot::Model v;
        v.entry = m;
        v.entry.blocks = blocks;
        v.coverage = net::block_coverage(servers, blocks);
        v.servers = std::move(servers);
        st->snap->models.push_back(std::move(v));
        st->finish_one();
      });
    }
    st->finish_one();
  });
  net::fetch_runs(dht, [st](std::vector<net::RunEntry> runs) {
    for (auto& r : runs) {
      st->pending++;
      train::fetch_progress(*st->dht, r.name, [st, r](const train::GlobalProgress& g) {
        st->snap->runs.push_back(SwarmSnapshot::Run{r, g});
        st->finish_one();
      });
    }
    st->finish_one();
  });
}

}  // namespace

SwarmWatcher::SwarmWatcher(WatcherOptions o) : opts_(std::move(o)), snap_(std::make_shared<SwarmSnapshot>()) {}

SwarmWatcher::~SwarmWatcher() { stop(); }

void SwarmWatcher::start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { main(); });
}

void SwarmWatcher::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<const SwarmSnapshot> SwarmWatcher::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snap_;
}

void SwarmWatcher::publish(std::shared_ptr<SwarmSnapshot> s) {
  std::lock_guard<std::mutex> lock(mu_);
  s->crawls = snap_->crawls + 1;
  snap_ = std::move(s);
}

// Keeps the last crawl's content: a slow DHT should not blank the page.
void SwarmWatcher::set_status(const std::string& status) {
  std::lock_guard<std::mutex> lock(mu_);
  auto s = std::make_shared<SwarmSnapshot>(*snap_);
  s->status = status;
  snap_ = std::move(s);
}

bool SwarmWatcher::sleep_s(double s) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::duration<double>(s), [this] { return stopping_; });
  return !stopping_;
}

void SwarmWatcher::main() {
  std::unique_ptr<train::NetThread> net;
  do {
    if (!net) {
      try {
        net::RpcOptions ro;
        ro.swarm = opts_.swarm;
        ro.swarm_key = opts_.swarm_key;
        net = std::make_unique<train::NetThread>("", opts_.peers, ro);
      } catch (const std::exception& e) {
        // The process's own node may not be answering yet: try again next period.
        set_status(std::string("joining: ") + e.what());
        continue;
      }
    }
    // Posted, not awaited with NetThread::run: stop() must not wait for a slow crawl.
    train::NetThread* n = net.get();
    uint64_t gen;
    {
      std::lock_guard<std::mutex> lock(mu_);
      gen = ++crawl_gen_;
      crawl_result_ = nullptr;
    }
    n->post([this, n, gen] {
      crawl(n->dht(), [this, gen](std::shared_ptr<SwarmSnapshot> s) {
        std::lock_guard<std::mutex> lock(mu_);
        if (gen == crawl_gen_) crawl_result_ = std::move(s);
        cv_.notify_all();
      });
    });
    std::shared_ptr<SwarmSnapshot> snap;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::duration<double>(opts_.crawl_timeout_s),
                   [this] { return stopping_ || crawl_result_ != nullptr; });
      if (stopping_) break;
      snap = std::move(crawl_result_);
      crawl_result_ = nullptr;
    }
    if (snap) publish(snap);
    else set_status("crawl timed out");
  } while (sleep_s(opts_.interval_s));
  net.reset();
}

}  // namespace engine::web
