#include "web/metrics.h"

#include <cmath>
#include <cstdio>

#include "core/error.h"

namespace engine::web {

std::string prometheus_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void Metrics::declare(const std::string& name, Kind kind, const std::string& help, std::vector<double> bounds) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = families_.find(name);
  if (it != families_.end()) {
    if (it->second.kind != kind) throw Error("metric '" + name + "' declared twice with different kinds");
    return;
  }
  families_[name] = Family{kind, help, std::move(bounds), {}};
}

void Metrics::counter(const std::string& name, const std::string& help) { declare(name, Kind::Counter, help, {}); }
void Metrics::gauge(const std::string& name, const std::string& help) { declare(name, Kind::Gauge, help, {}); }
void Metrics::histogram(const std::string& name, const std::string& help, std::vector<double> bounds) {
  declare(name, Kind::Histogram, help, std::move(bounds));
}

Metrics::Family& Metrics::family(const std::string& name, Kind want_a, Kind want_b) {
  auto it = families_.find(name);
  if (it == families_.end()) throw Error("metric '" + name + "' was not declared");
  if (it->second.kind != want_a && it->second.kind != want_b) throw Error("metric '" + name + "' used as the wrong kind");
  return it->second;
}

void Metrics::add(const std::string& name, double v, const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  family(name, Kind::Counter, Kind::Gauge).series[labels].value += v;
}

void Metrics::set(const std::string& name, double v, const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  family(name, Kind::Counter, Kind::Gauge).series[labels].value = v;
}

void Metrics::observe(const std::string& name, double v, const Labels& labels) {
  std::lock_guard<std::mutex> lock(mu_);
  Family& f = family(name, Kind::Histogram, Kind::Histogram);
  Series& s = f.series[labels];
  if (s.buckets.empty()) s.buckets.assign(f.bounds.size(), 0);
  for (size_t i = 0; i < f.bounds.size(); i++)
    if (v <= f.bounds[i]) {
      s.buckets[i]++;
      break;
    }
  s.count++;
  s.sum += v;
}

double Metrics::value(const std::string& name, const Labels& labels) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) return 0;
  auto s = it->second.series.find(labels);
  return s == it->second.series.end() ? 0 : s->second.value;
}

static std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

static std::string label_text(const Labels& labels, const std::string& extra_name = "", const std::string& extra = "") {
  if (labels.empty() && extra_name.empty()) return "";
  std::string out = "{";
  bool first = true;
  for (auto& [k, v] : labels) {
    out += (first ? "" : ",") + k + "=\"" + prometheus_escape(v) + "\"";
    first = false;
  }
  if (!extra_name.empty()) out += (first ? "" : ",") + extra_name + "=\"" + extra + "\"";
  return out + "}";
}

std::string Metrics::render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (auto& [name, f] : families_) {
    const char* type = f.kind == Kind::Counter ? "counter" : f.kind == Kind::Gauge ? "gauge" : "histogram";
    out += "# HELP " + name + " " + f.help + "\n# TYPE " + name + " " + type + "\n";
    if (f.kind != Kind::Histogram) {
      // A family with no series yet still shows 0, so dashboards and tests see it from the start.
      if (f.series.empty()) out += name + " 0\n";
      for (auto& [labels, s] : f.series) out += name + label_text(labels) + " " + number(s.value) + "\n";
      continue;
    }
    for (auto& [labels, s] : f.series) {
      uint64_t cum = 0;
      for (size_t i = 0; i < f.bounds.size(); i++) {
        cum += s.buckets[i];
        out += name + "_bucket" + label_text(labels, "le", number(f.bounds[i])) + " " + std::to_string(cum) + "\n";
      }
      out += name + "_bucket" + label_text(labels, "le", "+Inf") + " " + std::to_string(s.count) + "\n";
      out += name + "_sum" + label_text(labels) + " " + number(s.sum) + "\n";
      out += name + "_count" + label_text(labels) + " " + std::to_string(s.count) + "\n";
    }
  }
  return out;
}

}  // namespace engine::web
