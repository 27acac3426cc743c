// The compiled form of a SplitRegex (models/regex_split.h), shared by the
// parser (regex_parse.cpp) and the matcher (regex_match.cpp).
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "models/unicode.h"

namespace engine::regex_detail {

constexpr uint32_t kUnbounded = 0xFFFFFFFFu;

inline uint16_t cat_bit(UCat c) { return (uint16_t)(1u << (unsigned)c); }

// One bracket class or escape: a code point is in it when it lies in one of
// the ranges, has one of the categories, is White_Space (space), or fails one
// of the negated items (\S, \P{X}, \D inside a class); all of it inverted by
// `negated` ([^...]).
struct CharSet {
  std::vector<std::pair<uint32_t, uint32_t>> ranges;  // sorted, disjoint after finish()
  uint16_t cats = 0;
  bool space = false;
  std::vector<CharSet> negs;  // each matches when the inner set does not
  bool negated = false;

  bool has(uint32_t cp, UCat cat, bool ws) const {
    bool in = (cats & cat_bit(cat)) != 0 || (space && ws);
    if (!in && !ranges.empty()) {
      size_t lo = 0, hi = ranges.size();  // first range whose end >= cp
      while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        if (ranges[mid].second < cp) lo = mid + 1;
        else hi = mid;
      }
      in = lo < ranges.size() && ranges[lo].first <= cp;
    }
    for (size_t i = 0; !in && i < negs.size(); i++) in = !negs[i].has(cp, cat, ws);
    return in != negated;
  }
};

// A one-character test in disjunctive normal form: any term whose sets all
// hold. Plain classes are one term of one set; folded groups such as
// ((?=[\p{L}])([^a-z])) become one term of two sets.
struct Pred {
  std::vector<std::vector<CharSet>> any;

  bool test(uint32_t cp, UCat cat, bool ws) const {
    for (const auto& all : any) {
      bool ok = true;
      for (size_t i = 0; ok && i < all.size(); i++) ok = all[i].has(cp, cat, ws);
      if (ok) return true;
    }
    return false;
  }
};

enum class Kind : uint8_t {
  Char,     // pred, repeated min..max times
  Group,    // alts, repeated min..max times
  Look,     // (?=alts)
  NegLook,  // (?!alts)
  Begin,    // ^ : start of the subject
  End,      // $ : end of the subject
};

struct Node;
using Seq = std::vector<Node>;
using Alts = std::vector<Seq>;

struct Node {
  Kind kind = Kind::Char;
  Pred pred;
  Alts alts;
  uint32_t min = 1, max = 1;
  uint32_t slot = 0;  // Char: index of its run cache in the matcher
};

}  // namespace engine::regex_detail
