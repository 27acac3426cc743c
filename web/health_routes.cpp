#include "web/health_routes.h"

#include <chrono>

#include "web/health_state.h"
#include "web/http_server.h"

namespace engine::web {

void add_health_routes(httplib::Server& server, SwarmWatcher& watcher) {
  server.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-cache");
    res.set_content(health_page_html(), "text/html; charset=utf-8");
  });
  server.Get("/api/v1/state", [&watcher](const httplib::Request&, httplib::Response& res) {
    const double now =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    res.set_header("Cache-Control", "no-cache");
    reply_json(res, 200, health_state_json(*watcher.snapshot(), watcher.options(), now).dump());
  });
}

void add_metrics_route(httplib::Server& server, Metrics& metrics) {
  server.Get("/metrics", [&metrics](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
  });
}

}  // namespace engine::web
