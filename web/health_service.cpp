#include "web/health_service.h"

#include "web/health_routes.h"
#include "web/net_metrics.h"

namespace engine::web {

HealthService::HealthService(const std::string& listen, WatcherOptions watcher)
    : watcher_(std::move(watcher)), http_(HttpOptions{listen, 64 << 10, 4}) {
  declare_net_metrics(metrics_);
  add_health_routes(http_.routes(), watcher_);
  add_metrics_route(http_.routes(), metrics_);
}

HealthService::~HealthService() {
  http_.stop();
  watcher_.stop();
}

void HealthService::start() {
  http_.start();
  watcher_.start();
}

std::string HealthService::url() const {
  std::string host = http_.address().substr(0, http_.address().rfind(':'));
  if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
  if (host == "::" || host == "[::]") host = "[::1]";
  std::string u = "http://";
  u += host;
  u += ':';
  u += std::to_string(http_.port());
  u += '/';
  return u;
}

}  // namespace engine::web
