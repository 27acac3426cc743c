#include "net/routing.h"

#include <limits>
#include <queue>

namespace engine::net {

namespace {

// Seconds one hop costs: compute for its blocks plus the network round trip.
double hop_cost(const ServerInfo& s, int64_t a, int64_t b, const RouteOptions& o) {
  double n = (double)(b - a);
  double rtt = o.default_rtt_s;
  if (auto it = o.rtt_s.find(s.id); it != o.rtt_s.end()) rtt = it->second;
  double c;
  if (o.mode == RouteMode::kMinLatency) {
    double rps = s.inference_rps > 0 ? s.inference_rps : 1e-3;
    c = n / rps + rtt;
  } else {
    double rps = s.forward_rps > 0 ? s.forward_rps : 1e-3;
    double net = s.network_rps > 0 ? (double)o.batch_tokens / s.network_rps : 0;
    c = n * (double)o.batch_tokens / rps + net + rtt * 0.1;
  }
  if (o.cache_tokens_needed > 0 && s.cache_tokens_left < o.cache_tokens_needed) c += o.short_cache_penalty_s;
  return c;
}

bool usable(const ServerInfo& s, const RouteOptions& o) {
  return s.state == ServerState::kOnline && !o.banned.count(s.id) && !s.address.empty();
}

}  // namespace

Route find_route(const ServerMap& servers, int64_t from, int64_t to, const RouteOptions& opts) {
  if (from >= to) return {};
  const double inf = std::numeric_limits<double>::infinity();
  size_t n = (size_t)(to - from + 1);
  std::vector<double> dist(n, inf);
  struct Prev {
    const ServerInfo* s = nullptr;
    int64_t from = 0;
  };
  std::vector<Prev> prev(n);
  using QItem = std::pair<double, int64_t>;
  std::priority_queue<QItem, std::vector<QItem>, std::greater<>> q;
  dist[0] = 0;
  q.push({0, from});
  while (!q.empty()) {
    auto [d, a] = q.top();
    q.pop();
    if (d > dist[(size_t)(a - from)]) continue;
    if (a == to) break;
    for (auto& [id, s] : servers) {  // std::map: id order, so ties resolve the same way every time
      if (!usable(s, opts) || s.first > a || s.last <= a) continue;
      int64_t b = std::min(s.last, to);
      double nd = d + hop_cost(s, a, b, opts);
      size_t bi = (size_t)(b - from);
      if (nd < dist[bi]) {
        dist[bi] = nd;
        prev[bi] = {&s, a};
        q.push({nd, b});
      }
    }
  }
  if (dist[n - 1] == inf) return {};
  Route r;
  for (int64_t b = to; b != from;) {
    const Prev& p = prev[(size_t)(b - from)];
    r.push_back({p.s->id, p.s->address, p.from, b});
    b = p.from;
  }
  return Route(r.rbegin(), r.rend());
}

double route_cost(const ServerMap& servers, const Route& r, const RouteOptions& opts) {
  double c = 0;
  for (auto& h : r) {
    auto it = servers.find(h.id);
    if (it == servers.end()) return std::numeric_limits<double>::infinity();
    c += hop_cost(it->second, h.first, h.last, opts);
  }
  return c;
}

std::string route_to_string(const Route& r) {
  std::string s;
  for (auto& h : r) {
    if (!s.empty()) s += " -> ";
    s += std::to_string(h.first) + ":" + std::to_string(h.last) + "@" + h.address + " (" + h.id.substr(0, 8) + ")";
  }
  return s.empty() ? "(empty)" : s;
}

}  // namespace engine::net
