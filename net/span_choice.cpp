#include "net/span_choice.h"

#include <algorithm>
#include <map>

namespace engine::net {

std::vector<double> block_throughputs(const ServerMap& servers, int64_t n_blocks, const std::string& exclude) {
  std::vector<double> t((size_t)std::max<int64_t>(n_blocks, 0), 0.0);
  for (auto& [id, s] : servers) {
    if (id == exclude || s.state == ServerState::kOffline) continue;
    for (int64_t b = std::max<int64_t>(0, s.first); b < std::min(s.last, n_blocks); b++) t[(size_t)b] += s.throughput;
  }
  return t;
}

int64_t choose_best_start(const std::vector<double>& t, int64_t length) {
  int64_t n = (int64_t)t.size();
  length = std::clamp<int64_t>(length, 1, std::max<int64_t>(n, 1));
  int64_t best = 0;
  std::vector<double> best_key;
  for (int64_t i = 0; i + length <= n; i++) {
    std::vector<double> key(t.begin() + i, t.begin() + i + length);
    std::sort(key.begin(), key.end());
    if (i == 0 || key < best_key) best_key = std::move(key), best = i;  // ties: the earliest window
  }
  return best;
}

int64_t choose_span_start(const ServerMap& servers, int64_t n_blocks, int64_t length, const std::string& self) {
  return choose_best_start(block_throughputs(servers, n_blocks, self), length);
}

bool should_move(const ServerMap& servers, int64_t n_blocks, const std::string& self, double balance_quality,
                 std::mt19937_64& rng, double* quality_out) {
  if (quality_out) *quality_out = 1.0;
  if (balance_quality > 1.0) return true;  // forces a move on every check (debugging)
  struct Span {
    int64_t start, length;
    double tp;
  };
  std::map<std::string, Span> spans;
  for (auto& [id, s] : servers)
    if (s.state != ServerState::kOffline && s.first < n_blocks)
      spans[id] = {s.first, std::min(s.last, n_blocks) - s.first, s.throughput};
  auto it = spans.find(self);
  if (it == spans.end()) return false;
  std::vector<double> t = block_throughputs(servers, n_blocks);
  if (t.empty()) return false;
  const double eps = 1e-3;
  double initial = *std::min_element(t.begin(), t.end());
  auto add = [&](const Span& s, double k) {
    for (int64_t b = s.start; b < s.start + s.length; b++) t[(size_t)b] += s.tp * k;
  };
  Span& local = it->second;
  // Without (1 + eps) a block served by no one else would show ~1e-17 and tempt us to move.
  add(local, -(1 + eps));
  int64_t ns = choose_best_start(t, local.length);
  if (ns == local.start) return false;  // already in the best place
  add(local, eps);
  local.start = ns;
  add(local, 1);
  // Let every server re-settle greedily, as they would after we moved.
  std::vector<std::string> ids;
  for (auto& [id, s] : spans) ids.push_back(id);
  for (int round = 0, moved = 1; moved && round < 100; round++) {  // capped: re-settling normally ends in a few rounds
    moved = 0;
    std::shuffle(ids.begin(), ids.end(), rng);
    for (auto& id : ids) {
      Span& s = spans[id];
      add(s, -(1 + eps));
      int64_t st = choose_best_start(t, s.length);
      add(s, eps);
      if (st != s.start) s.start = st, moved = 1;
      add(s, 1);
    }
  }
  double now = *std::min_element(t.begin(), t.end());
  if (now < initial || now < eps) return false;
  double q = initial / now;
  if (quality_out) *quality_out = q;
  return q < balance_quality - eps;
}

}  // namespace engine::net
