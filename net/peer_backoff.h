// Refusal periods for peers that broke the protocol or a limit: the first
// offence costs base_ms, each further one doubles it (up to max_ms), and the
// level decays by one step for every decay_ms of good behaviour after the
// refusal ends. Keys are strings ("ip:1.2.3.4", "id:<hex>"): ids are cheap to
// mint, so the server keys both. Bounded: at most max_entries keys are kept.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace engine::net {

class PeerBackoff {
 public:
  struct Options {
    uint64_t base_ms = 1000;     // 0 = never refuse anyone
    uint64_t max_ms = 300000;
    uint64_t decay_ms = 60000;   // one doubling forgiven per this much quiet time
    size_t max_entries = 65536;  // ~100 bytes each
  };
  PeerBackoff() = default;
  explicit PeerBackoff(Options o) : opts_(o) {}
  void set_options(Options o) { opts_ = o; }

  // Records an offence by `key` at loop time `now`; returns the refusal it earned (ms).
  uint64_t punish(const std::string& key, uint64_t now);
  // Milliseconds of refusal left for `key`; 0 = admitted.
  uint64_t refused_for(const std::string& key, uint64_t now) const;
  // Drops keys whose level has decayed to nothing (call now and then).
  void forget_old(uint64_t now);
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    uint64_t until_ms = 0;  // refused before this
    int level = 0;          // offences not yet forgiven
  };
  int decayed_level(const Entry& e, uint64_t now) const;

  Options opts_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace engine::net
