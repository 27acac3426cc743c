// The swarm health page's routes, for any process that runs a SwarmWatcher
// (engine dht, engine serve, engine api):
//   GET /               the page (web/health_page.cpp), self-contained, polling
//   GET /api/v1/state   the watcher's last snapshot as JSON (web/health_state.h)
// and, separately, GET /metrics for a Metrics registry. Handlers run on HTTP
// threads and only read the watcher's published snapshot and the registry.
#pragma once
#include <httplib.h>

#include "web/metrics.h"
#include "web/swarm_watcher.h"

namespace engine::web {

void add_health_routes(httplib::Server& server, SwarmWatcher& watcher);
void add_metrics_route(httplib::Server& server, Metrics& metrics);

// The page's HTML (script and style inline; it fetches nothing but /api/v1/state).
const char* health_page_html();

}  // namespace engine::web
