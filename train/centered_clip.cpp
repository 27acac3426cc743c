#include "train/centered_clip.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace engine::train {

bool aggregator_from_name(const std::string& s, Aggregator* out) {
  if (s == "mean") *out = Aggregator::Mean;
  else if (s == "centered-clip") *out = Aggregator::CenteredClip;
  else return false;
  return true;
}

namespace {

void check_inputs(const std::vector<const float*>& inputs, const std::vector<double>& w) {
  if (inputs.empty()) throw Error("aggregate: no inputs");
  if (inputs.size() != w.size()) throw Error("aggregate: one weight per input is needed");
  for (double x : w)
    if (!(x > 0) || !std::isfinite(x)) throw Error("aggregate: weights must be positive and finite");
}

void weighted_mean(const std::vector<const float*>& g, const std::vector<double>& w, int64_t dim, float* out) {
  double W = 0;
  for (double x : w) W += x;
  for (int64_t k = 0; k < dim; k++) {
    double s = 0;
    for (size_t i = 0; i < g.size(); i++) s += w[i] * (double)g[i][k];
    out[k] = (float)(s / W);
  }
}

// Lower weighted median per coordinate: the smallest value whose cumulative
// weight reaches half the total. With equal weights and an even count it is the
// lower of the two middle values (no averaging, so it is always an input value).
void weighted_median(const std::vector<const float*>& g, const std::vector<double>& w, int64_t dim, float* out) {
  const size_t n = g.size();
  double half = 0;
  for (double x : w) half += x;
  half /= 2;
  std::vector<std::pair<float, double>> col(n);
  for (int64_t k = 0; k < dim; k++) {
    for (size_t i = 0; i < n; i++) col[i] = {g[i][k], w[i]};
    std::sort(col.begin(), col.end(), [](auto& a, auto& b) { return a.first < b.first; });
    double cum = 0;
    size_t m = 0;
    while (m + 1 < n && (cum += col[m].second) < half) m++;
    out[k] = col[m].first;
  }
}

// One CenteredClip step: x += Σ wᵢ·cᵢ·(gᵢ − x) / Σ wᵢ, cᵢ = min(1, τ/‖gᵢ − x‖).
// Returns ‖Δx‖ and sets *x_norm = ‖x‖ (the new x) and *clipped.
double clip_step(const std::vector<const float*>& g, const std::vector<double>& w, int64_t dim, float tau, float* x,
                 double* x_norm, int* clipped) {
  const size_t n = g.size();
  std::vector<double> dist2(n, 0.0);
  for (size_t i = 0; i < n; i++) {
    double s = 0;
    for (int64_t k = 0; k < dim; k++) {
      double d = (double)g[i][k] - (double)x[k];
      s += d * d;
    }
    dist2[i] = s;
  }
  double W = 0;
  std::vector<double> coef(n);
  *clipped = 0;
  for (size_t i = 0; i < n; i++) {
    double dist = std::sqrt(dist2[i]);
    double c = dist > (double)tau ? (double)tau / dist : 1.0;  // τ = ∞ never clips
    *clipped += c < 1.0;
    coef[i] = w[i] * c;
    W += w[i];
  }
  double step2 = 0, norm2 = 0;
  for (int64_t k = 0; k < dim; k++) {
    double xk = x[k], s = 0;
    for (size_t i = 0; i < n; i++) s += coef[i] * ((double)g[i][k] - xk);
    float nx = (float)(xk + s / W);
    double d = (double)nx - xk;
    step2 += d * d;
    norm2 += (double)nx * nx;
    x[k] = nx;
  }
  *x_norm = std::sqrt(norm2);
  return std::sqrt(step2);
}

// The median of v (the upper of the two middle values for an even count, so two
// inputs give the larger distance and are averaged, not pinned to one of them).
double upper_median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<double> capped_weights(const std::vector<double>& w, double ratio) {
  if (ratio <= 0) return w;
  const double cap = ratio * upper_median(w);
  std::vector<double> out(w);
  for (double& x : out) x = std::min(x, cap);
  return out;
}

// τ·median over inputs of ‖gᵢ − x0‖.
float relative_tau(const std::vector<const float*>& g, const float* x0, int64_t dim, float tau) {
  std::vector<double> dist(g.size());
  for (size_t i = 0; i < g.size(); i++) {
    double s = 0;
    for (int64_t k = 0; k < dim; k++) {
      const double d = (double)g[i][k] - (double)x0[k];
      s += d * d;
    }
    dist[i] = std::sqrt(s);
  }
  return (float)((double)tau * upper_median(dist));
}

}  // namespace

void aggregate(Aggregator a, const std::vector<const float*>& inputs, const std::vector<double>& w, int64_t dim,
               const ClipConfig& c, float* out, ClipStats* stats) {
  check_inputs(inputs, w);
  ClipStats st;
  if (a == Aggregator::Mean || inputs.size() == 1) {
    weighted_mean(inputs, w, dim, out);
  } else {
    const std::vector<double> wc = capped_weights(w, c.max_weight_ratio);
    weighted_median(inputs, wc, dim, out);
    const float tau = c.relative ? relative_tau(inputs, out, dim, c.tau) : c.tau;
    st.tau = tau;
    for (int it = 0; it < std::max(1, c.iters); it++) {
      double x_norm = 0;
      double step = clip_step(inputs, wc, dim, tau, out, &x_norm, &st.clipped);
      st.iterations = it + 1;
      if (step <= (double)c.tol * (1.0 + x_norm)) break;
    }
  }
  if (stats) *stats = st;
}

}  // namespace engine::train
