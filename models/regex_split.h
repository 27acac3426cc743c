// A small backtracking regex engine for the pre-tokenizer split patterns of
// llama.cpp / Hugging Face tokenizers, working on decoded code points.
//
// The patterns are interpreted as written (Perl/ECMAScript semantics:
// leftmost-first alternation, greedy quantifiers, backtracking), over the
// subset of syntax they use:
//   alternation |, groups ( ) (?: ), lookahead (?= ) (?! ), anchors ^ $,
//   quantifiers * + ? {n} {n,} {n,m} (greedy only),
//   classes [..] [^..] with ranges, \s \S \d \D \p{X} \P{X} (X = L N P S M Z C),
//   escapes \r \n \t \f \v \\ and any escaped punctuation, literal UTF-8.
// \s is the Unicode White_Space property, \d is [0-9], \p{X} a major Unicode
// category. Anything else (lazy quantifiers, backreferences, (?i), \b, .)
// is refused with an Error naming the pattern and the offending offset.
//
// std::regex is not used: it has no \p{..} classes and recurses per
// character. Here a quantified single-character item (after folding
// one-character groups such as ((?=[\p{L}])([^a-z])) into one class) is
// matched by a loop, so the recursion depth depends on the pattern only.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "models/unicode.h"

namespace engine {

// Text decoded once for all splitters: per character its code point, byte
// offset, category and White_Space flag. Invalid UTF-8 bytes become single
// characters U+FFFD (a Symbol) but keep their own bytes.
struct DecodedText {
  std::vector<uint32_t> cp;
  std::vector<uint32_t> off;  // byte offset of each char; off[size()] = text size
  std::vector<UCat> cat;
  std::vector<uint8_t> ws;

  explicit DecodedText(std::string_view text);
  size_t size() const { return cp.size(); }
};

namespace regex_detail {
struct Node;
using Seq = std::vector<Node>;
using Alts = std::vector<Seq>;
}  // namespace regex_detail

class SplitRegex {
 public:
  // Throws Error for syntax outside the supported subset.
  explicit SplitRegex(std::string_view pattern);
  ~SplitRegex();
  SplitRegex(SplitRegex&&) noexcept;
  SplitRegex& operator=(SplitRegex&&) noexcept;

  const std::string& pattern() const { return pattern_; }

  // Cuts every chunk given by `ends` (character indices where the current
  // pieces end) at the leftmost matches of the pattern: each match and each
  // run of text between matches becomes a piece, as llama.cpp's std::regex
  // path does. A chunk is the whole subject: lookahead and $ see nothing
  // beyond it, ^ is its start. Empty matches are ignored. Returns the new
  // piece ends.
  std::vector<size_t> split(const DecodedText& t, const std::vector<size_t>& ends) const;

 private:
  std::string pattern_;
  std::unique_ptr<regex_detail::Alts> root_;
  uint32_t n_slots_ = 0;  // Char nodes, each with a run cache while splitting
};

}  // namespace engine
