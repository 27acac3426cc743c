#include "net/spot_check.h"

#include <algorithm>
#include <cmath>

namespace engine::net {

double spot_check_tolerance(DType wire) {
  switch (wire) {
    case DType::F16: return 2e-2;
    case DType::BF16: return 5e-2;
    default: return 1e-2;
  }
}

double row_error(const float* a, const float* b, int64_t n_embd) {
  double d = 0, r = 0;
  for (int64_t i = 0; i < n_embd; i++) {
    double x = (double)a[i] - b[i];
    d += x * x;
    r += (double)b[i] * b[i];
  }
  if (!std::isfinite(d) || !std::isfinite(r)) return INFINITY;
  if (r == 0) return d == 0 ? 0 : INFINITY;
  return std::sqrt(d / r);
}

int64_t first_mismatch(const float* a, const float* b, int64_t rows, int64_t n_embd, double tol) {
  for (int64_t p = 0; p < rows; p++)
    if (!(row_error(a + p * n_embd, b + p * n_embd, n_embd) <= tol)) return p;
  return -1;
}

Verdict arbitrate(int64_t p_vs_v, int64_t w_vs_p, int64_t w_vs_v) {
  if (p_vs_v < 0) return Verdict::kAgree;
  if (w_vs_p == -2 || w_vs_v == -2) return Verdict::kUnresolved;  // no third server
  if (w_vs_v < 0 && w_vs_p >= 0) return Verdict::kPrimaryLies;
  if (w_vs_p < 0 && w_vs_v >= 0) return Verdict::kVerifierLies;
  return Verdict::kUnresolved;  // W agrees with neither (or, impossibly, with both)
}

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::kAgree: return "agree";
    case Verdict::kPrimaryLies: return "primary lies";
    case Verdict::kVerifierLies: return "verifier lies";
    case Verdict::kUnresolved: return "unresolved";
  }
  return "?";
}

void truncate_history(std::vector<float>& rows, std::vector<int64_t>& steps, int64_t n_embd, int64_t keep) {
  keep = std::max<int64_t>(0, keep);
  int64_t pos = 0;
  size_t i = 0;
  for (; i < steps.size() && pos < keep; i++) {
    if (pos + steps[i] > keep) steps[i] = keep - pos;
    pos += steps[i];
  }
  steps.resize(i);
  rows.resize((size_t)(std::min<int64_t>(pos, (int64_t)(rows.size() / (size_t)n_embd)) * n_embd));
}

size_t tokens_to_keep(size_t n_all, size_t n_prompt, int64_t k) {
  size_t keep = std::max(n_prompt, (size_t)std::max<int64_t>(0, k) + 1);
  return std::min(keep, n_all);
}

}  // namespace engine::net
