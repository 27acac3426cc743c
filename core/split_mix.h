// SplitMix64 (Steele, Lea & Flood): a tiny, well-mixed generator that is cheap to
// seed, so every row of a random matrix can have its own stream and the values do
// not depend on how rows are split across threads. Used for random weights.
#pragma once
#include <cmath>
#include <cstdint>
#include <string>

namespace engine {

struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return ((next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
  float normal() {  // Box–Muller, one value per call
    return (float)(std::sqrt(-2.0 * std::log(uniform())) * std::cos(6.283185307179586 * uniform()));
  }
};

// FNV-1a of a name (a tensor's), to give each tensor its own seed.
inline uint64_t name_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace engine
