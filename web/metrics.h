// Prometheus metrics: a registry of counters, gauges and histograms that any
// thread may update, rendered in the Prometheus text exposition format
// (version 0.0.4) for GET /metrics. Names follow Prometheus' conventions:
// engine_<what>_<unit>[_total]. Loop-owned statistics (RPC, DHT, block
// server) are copied in by the loop with set() on a timer, so a scrape never
// touches loop state.
#pragma once
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace engine::web {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Metrics {
 public:
  enum class Kind { Counter, Gauge, Histogram };
  // Declares a family; updates of undeclared names throw (a typo fails loudly in tests).
  void counter(const std::string& name, const std::string& help);
  void gauge(const std::string& name, const std::string& help);
  // `bounds`: the upper bounds of the buckets, ascending (+Inf is implied).
  void histogram(const std::string& name, const std::string& help, std::vector<double> bounds);

  void add(const std::string& name, double v = 1, const Labels& labels = {});  // counter (or gauge) += v
  void set(const std::string& name, double v, const Labels& labels = {});      // gauge = v (or a counter copied in)
  void observe(const std::string& name, double v, const Labels& labels = {});  // histogram
  // The current value of a counter or gauge (0 when never set); for tests and JSON.
  double value(const std::string& name, const Labels& labels = {}) const;

  std::string render() const;

 private:
  struct Series {
    double value = 0;                 // counter / gauge
    std::vector<uint64_t> buckets;    // histogram: counts per bound (not cumulative)
    uint64_t count = 0;
    double sum = 0;
  };
  struct Family {
    Kind kind;
    std::string help;
    std::vector<double> bounds;
    std::map<Labels, Series> series;
  };
  Family& family(const std::string& name, Kind want_a, Kind want_b);
  void declare(const std::string& name, Kind kind, const std::string& help, std::vector<double> bounds);

  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
};

// A label value escaped for the text format (backslash, quote, newline).
std::string prometheus_escape(const std::string& s);

}  // namespace engine::web
