// The swarm as a health page sees it. A SwarmWatcher runs its own DHT client
// node (a train::NetThread: its own thread and libuv loop, no listener) that
// joins through the given peers — in `engine dht` and `engine serve` the
// process's own address — and crawls every few seconds: the model index, each
// model's block records, the run index, each run's progress records
// (net/swarm_index.h). Each crawl publishes an immutable snapshot under a
// mutex, so HTTP threads read it without ever touching loop state, and the
// watcher works the same in every process that embeds it.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "net/server_info.h"
#include "net/swarm_key.h"
#include "net/swarm_index.h"
#include "train/progress_tracker.h"

namespace engine::web {

struct SwarmSnapshot {
  struct Model {
    net::ModelEntry entry;
    net::ServerMap servers;     // by id, every announced state (offline too)
    std::vector<int> coverage;  // online servers per block; 0 is a gap
  };
  struct Run {
    net::RunEntry entry;
    train::GlobalProgress progress;
  };
  double time = 0;        // DHT time (Unix s) the crawl ended; 0: none yet
  uint64_t crawls = 0;    // completed crawls
  std::string status = "joining";  // "ok", "joining", or what went wrong last
  std::vector<Model> models;
  std::vector<Run> runs;
};

struct WatcherOptions {
  std::vector<std::string> peers;  // where the client node joins
  std::string swarm = "default";
  std::shared_ptr<const net::SwarmKey> swarm_key;  // a private swarm's key (--swarm-key); null = open
  double interval_s = 3;           // between crawls
  double crawl_timeout_s = 30;
  std::string role;                // shown on the page: "dht", "serve", "api"
  std::string address;             // the process's own RPC address, shown on the page
};

// The largest number of blocks crawled per model (an index entry is written by
// anyone; a bogus block count must not make a crawl unbounded).
inline constexpr int64_t kMaxCrawlBlocks = 1024;

class SwarmWatcher {
 public:
  explicit SwarmWatcher(WatcherOptions o);
  ~SwarmWatcher();  // stop()
  SwarmWatcher(const SwarmWatcher&) = delete;
  SwarmWatcher& operator=(const SwarmWatcher&) = delete;

  void start();  // returns at once; joining and crawling happen on the watcher's thread
  void stop();   // idempotent; waits for the thread
  std::shared_ptr<const SwarmSnapshot> snapshot() const;
  const WatcherOptions& options() const { return opts_; }

 private:
  void main();
  void publish(std::shared_ptr<SwarmSnapshot> s);
  void set_status(const std::string& status);
  bool sleep_s(double s);  // false when stopping

  WatcherOptions opts_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::shared_ptr<const SwarmSnapshot> snap_;
  uint64_t crawl_gen_ = 0;                      // a late answer of a timed-out crawl is dropped
  std::shared_ptr<SwarmSnapshot> crawl_result_;  // from the loop thread
  std::thread thread_;
};

}  // namespace engine::web
