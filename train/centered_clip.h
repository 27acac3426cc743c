// Robust aggregation of n peers' contributions to one part of a vector.
//
// CenteredClip (Karimireddy et al. 2021; BTARD, Gorbunov et al. 2022): start from
// the coordinate-wise median and iterate
//   x ← x + Σᵢ wᵢ·(gᵢ − x)·min(1, τ/‖gᵢ − x‖) / Σᵢ wᵢ
// until ‖Δx‖ <= tol·(1 + ‖x‖) or `iters` iterations. With τ = ∞ it is the weighted
// mean after one iteration; a contribution far from the others moves x by at
// most τ·wᵢ/Σw per iteration, so one liar among n cannot drag the result far.
#pragma once
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace engine::train {

enum class Aggregator { Mean, CenteredClip };
// "mean" / "centered-clip"; false when unknown.
bool aggregator_from_name(const std::string& s, Aggregator* out);

struct ClipConfig {
  float tau = 1.0f;           // clipping radius, in the units of the vectors (or relative, below)
  int iters = 20;             // iteration cap
  float tol = 1e-6f;          // relative step size that ends the iteration
  // τ as a multiple of the median distance of the inputs from their coordinate-wise
  // median, so one setting fits gradients of any scale. A minority of liars cannot
  // inflate it: the median distance is an honest input's distance.
  bool relative = false;
  // Weights above max_weight_ratio × the median weight count as that much, so a
  // liar cannot buy influence by claiming a huge weight (0: no cap).
  double max_weight_ratio = 0;
};

struct ClipStats {
  int iterations = 0;
  int clipped = 0;            // contributions scaled down in the last iteration
  float tau = 0;              // the radius used (relative τ resolved)
};

// out[dim] = aggregate of inputs[i][dim] with weights w[i] (> 0). Mean: Σ wᵢgᵢ / Σ wᵢ
// (accumulated in double, so it is the weighted mean to f32 rounding). CenteredClip
// starts from the lower weighted median per coordinate (the smallest value whose
// cumulative weight reaches half the total) and accumulates norms and steps in
// double; `out` holds x between iterations. Throws Error when inputs is empty or a
// weight is not positive and finite.
void aggregate(Aggregator a, const std::vector<const float*>& inputs, const std::vector<double>& w, int64_t dim,
               const ClipConfig& c, float* out, ClipStats* stats = nullptr);

}  // namespace engine::train
