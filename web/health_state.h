// The JSON of GET /api/v1/state (docs/health.md has the schema): what the
// health page renders, built from a watcher's snapshot. Pure, so tests feed it
// hand-made snapshots.
#pragma once
#include <nlohmann/json.hpp>

#include "web/swarm_watcher.h"

namespace engine::web {

// `now`: DHT time (Unix s), for the snapshot's age.
nlohmann::json health_state_json(const SwarmSnapshot& s, const WatcherOptions& o, double now);

// Blocks [a, b) of `coverage` with no online server, as [a, b) pairs.
std::vector<std::pair<int64_t, int64_t>> coverage_gaps(const std::vector<int>& coverage);

}  // namespace engine::web
