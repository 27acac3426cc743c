// `engine serve --byzantine-serve MODE`: a TEST-ONLY misbehaving server, so the
// clients' spot checks (net/spot_check.h) can be tested against a real liar.
// It computes honestly, then perturbs the hidden states it returns from
// inference steps:
//   noise:S[@N]  adds Gaussian noise of S times each row's RMS
//   sign[@N]     flips the sign of every value
// "@N" keeps the first N steps (counted over all sessions) honest, so a test
// can tell when the lie starts. Nobody should run this outside tests.
#pragma once
#include <cstdint>
#include <random>
#include <string>

namespace engine::net {

struct ByzantineMode {
  enum class Kind { kHonest, kNoise, kSign } kind = Kind::kHonest;
  double scale = 0;         // kNoise: noise RMS relative to the row's RMS
  uint64_t after_steps = 0; // honest steps before the lies start

  bool honest() const { return kind == Kind::kHonest; }
  std::string describe() const;
};

// Parses "noise:0.5", "noise:0.5@10", "sign", "sign@3"; throws Error on anything else.
ByzantineMode parse_byzantine_mode(const std::string& s);

// Perturbs hidden [n][n_embd] returned by the server's `step_index`-th step (0-based).
void byzantine_perturb(const ByzantineMode& m, uint64_t step_index, float* hidden, int64_t n, int64_t n_embd,
                       std::mt19937_64& rng);

}  // namespace engine::net
