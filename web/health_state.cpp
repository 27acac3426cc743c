#include "web/health_state.h"

#include <algorithm>
#include <cmath>

namespace engine::web {

using nlohmann::json;

namespace {

// NaN and infinities are not JSON: they become null.
json number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json server_json(const net::ServerInfo& s) {
  return json{{"id", s.id},
              {"state", net::server_state_name(s.state)},
              {"first", s.first},
              {"last", s.last},
              {"throughput", number(s.throughput)},
              {"inference_rps", number(s.inference_rps)},
              {"forward_rps", number(s.forward_rps)},
              {"network_rps", number(s.network_rps)},
              {"cache_tokens_left", s.cache_tokens_left},
              {"address", s.address},
              {"public_name", s.public_name},
              {"version", s.version},
              {"adapters", s.adapters}};
}

json model_json(const SwarmSnapshot::Model& m) {
  std::vector<const net::ServerInfo*> servers;
  for (auto& [id, s] : m.servers) servers.push_back(&s);
  std::sort(servers.begin(), servers.end(), [](auto* a, auto* b) {
    return a->first != b->first ? a->first < b->first : a->id < b->id;
  });
  json blocks = json::array();
  for (size_t b = 0; b < m.coverage.size(); b++) {
    json ids = json::array();
    for (auto* s : servers)
      if (s->state == net::ServerState::kOnline && s->first <= (int64_t)b && (int64_t)b < s->last) ids.push_back(s->id);
    blocks.push_back(json{{"index", b}, {"servers", ids}, {"gap", m.coverage[b] == 0}});
  }
  json gaps = json::array();
  for (auto [a, b] : coverage_gaps(m.coverage)) gaps.push_back(json::array({a, b}));
  json list = json::array();
  for (auto* s : servers) list.push_back(server_json(*s));
  return json{{"name", m.entry.name},   {"n_blocks", m.entry.blocks}, {"n_embd", m.entry.n_embd},
              {"complete", gaps.empty()}, {"gaps", gaps},             {"blocks", blocks},
              {"servers", list}};
}

json run_json(const SwarmSnapshot::Run& r) {
  const train::GlobalProgress& g = r.progress;
  json peers = json::array();
  double loss_sum = 0;
  int losses = 0;
  for (auto& p : g.records) {
    peers.push_back(json{{"peer", p.peer},
                         {"epoch", p.epoch},
                         {"samples", p.samples},
                         {"samples_per_s", number(p.samples_per_s)},
                         {"address", p.addr},
                         {"client", p.client_mode},
                         {"loss", number(p.loss)}});
    if (std::isfinite(p.loss)) loss_sum += p.loss, losses++;
  }
  const double eta = r.entry.target_batch > 0 ? g.eta(r.entry.target_batch) : NAN;
  return json{{"name", r.entry.name},
              {"parent", r.entry.parent},
              {"target_batch", r.entry.target_batch},
              {"epoch", g.epoch},
              {"samples", g.samples_at_epoch},
              {"samples_per_s", number(g.samples_per_s)},
              {"eta_s", number(eta)},
              {"n_peers", g.peers},
              {"peers_at_epoch", g.peers_at_epoch},
              {"loss", losses ? json(loss_sum / losses) : json(nullptr)},
              {"peers", peers}};
}

}  // namespace

std::vector<std::pair<int64_t, int64_t>> coverage_gaps(const std::vector<int>& coverage) {
  std::vector<std::pair<int64_t, int64_t>> out;
  for (size_t b = 0; b < coverage.size(); b++) {
    if (coverage[b] > 0) continue;
    if (!out.empty() && out.back().second == (int64_t)b) out.back().second++;
    else out.push_back({(int64_t)b, (int64_t)b + 1});
  }
  return out;
}

json health_state_json(const SwarmSnapshot& s, const WatcherOptions& o, double now) {
  json models = json::array(), runs = json::array();
  for (auto& m : s.models) models.push_back(model_json(m));
  for (auto& r : s.runs) runs.push_back(run_json(r));
  return json{{"version", 1},
              {"node", json{{"role", o.role}, {"address", o.address}, {"swarm", o.swarm}}},
              {"status", s.status},
              {"crawls", s.crawls},
              {"updated", s.time > 0 ? json(s.time) : json(nullptr)},
              {"age_s", s.time > 0 ? json(std::max(0.0, now - s.time)) : json(nullptr)},
              {"crawl_interval_s", o.interval_s},
              {"models", models},
              {"runs", runs}};
}

}  // namespace engine::web
