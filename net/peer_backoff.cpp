#include "net/peer_backoff.h"

#include <algorithm>

namespace engine::net {

int PeerBackoff::decayed_level(const Entry& e, uint64_t now) const {
  if (now <= e.until_ms || opts_.decay_ms == 0) return e.level;
  uint64_t steps = (now - e.until_ms) / opts_.decay_ms;
  return steps >= (uint64_t)e.level ? 0 : e.level - (int)steps;
}

uint64_t PeerBackoff::punish(const std::string& key, uint64_t now) {
  if (opts_.base_ms == 0) return 0;
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (entries_.size() >= opts_.max_entries) forget_old(now);
    if (entries_.size() >= opts_.max_entries) {
      // Still full (a flood of fresh addresses): forget the refusal that ends first.
      auto oldest = std::min_element(entries_.begin(), entries_.end(),
                                     [](auto& a, auto& b) { return a.second.until_ms < b.second.until_ms; });
      entries_.erase(oldest);
    }
    it = entries_.emplace(key, Entry{}).first;
  }
  Entry& e = it->second;
  e.level = decayed_level(e, now);
  // base * 2^level, capped; the shift is bounded so it cannot overflow.
  uint64_t ms = opts_.base_ms << std::min(e.level, 30);
  ms = std::min(ms, std::max(opts_.max_ms, opts_.base_ms));
  e.until_ms = std::max(e.until_ms, now + ms);
  if (ms < opts_.max_ms) e.level++;
  return ms;
}

uint64_t PeerBackoff::refused_for(const std::string& key, uint64_t now) const {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.until_ms <= now) return 0;
  return it->second.until_ms - now;
}

void PeerBackoff::forget_old(uint64_t now) {
  for (auto it = entries_.begin(); it != entries_.end();)
    it = it->second.until_ms <= now && decayed_level(it->second, now) == 0 ? entries_.erase(it) : std::next(it);
}

}  // namespace engine::net
