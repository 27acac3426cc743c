#include "net/byzantine.h"

#include <cmath>
#include <cstdlib>

#include "core/error.h"

namespace engine::net {

std::string ByzantineMode::describe() const {
  std::string after = after_steps ? " after " + std::to_string(after_steps) + " honest steps" : "";
  switch (kind) {
    case Kind::kHonest: return "honest";
    case Kind::kNoise: return "adds noise of " + std::to_string(scale) + " x RMS to its outputs" + after;
    case Kind::kSign: return "flips the sign of its outputs" + after;
  }
  return "?";
}

ByzantineMode parse_byzantine_mode(const std::string& s) {
  const std::string bad = "--byzantine-serve is noise:SCALE[@N] or sign[@N], not \"" + s + "\"";
  ByzantineMode m;
  std::string body = s;
  size_t at = s.find('@');
  if (at != std::string::npos) {
    std::string n = s.substr(at + 1);
    char* end = nullptr;
    long long v = n.empty() ? -1 : std::strtoll(n.c_str(), &end, 10);
    if (v < 0 || *end) throw Error(bad);
    m.after_steps = (uint64_t)v;
    body = s.substr(0, at);
  }
  if (body == "sign") {
    m.kind = ByzantineMode::Kind::kSign;
    return m;
  }
  if (body.rfind("noise:", 0) == 0) {
    std::string v = body.substr(6);
    char* end = nullptr;
    double x = v.empty() ? 0 : std::strtod(v.c_str(), &end);
    if (!(x > 0) || !std::isfinite(x) || *end) throw Error(bad);
    m.kind = ByzantineMode::Kind::kNoise;
    m.scale = x;
    return m;
  }
  throw Error(bad);
}

void byzantine_perturb(const ByzantineMode& m, uint64_t step_index, float* hidden, int64_t n, int64_t n_embd,
                       std::mt19937_64& rng) {
  if (m.honest() || step_index < m.after_steps) return;
  if (m.kind == ByzantineMode::Kind::kSign) {
    for (int64_t i = 0; i < n * n_embd; i++) hidden[i] = -hidden[i];
    return;
  }
  std::normal_distribution<float> g(0.f, 1.f);
  for (int64_t r = 0; r < n; r++) {
    float* row = hidden + r * n_embd;
    double ss = 0;
    for (int64_t i = 0; i < n_embd; i++) ss += (double)row[i] * row[i];
    float sigma = (float)(m.scale * std::sqrt(ss / (double)n_embd));
    for (int64_t i = 0; i < n_embd; i++) row[i] += sigma * g(rng);
  }
}

}  // namespace engine::net
