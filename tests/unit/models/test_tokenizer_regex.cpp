// The pre-tokenizer regex engine (models/regex_split.h): backtracking
// semantics, classes, folding of one-character groups, refused syntax, and
// agreement with the hand-written GPT-2 / Llama 3 / Qwen 2 splitters on
// random text.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "models/regex_split.h"
#include "models/vocab.h"

using namespace engine;

namespace {

using S = std::vector<std::string>;

// Splits with one pattern through the regex engine (no fast paths).
S rsplit(const std::string& pattern, const std::string& text) {
  S out;
  for (std::string_view w : pretokenize_patterns({pattern}, text, false)) out.emplace_back(w);
  return out;
}

TEST(SplitRegex, LeftmostFirstAlternation) {
  EXPECT_EQ(rsplit("a|ab", "ab"), (S{"a", "b"}));  // the first alternative wins, not the longest
  EXPECT_EQ(rsplit("ab|a", "ab"), (S{"ab"}));
}

TEST(SplitRegex, GreedyWithBacktracking) {
  // At 1, \s+ takes three spaces, the lookahead sees 'b', so it gives one back;
  // at 3 a single space before 'b' cannot match: it stays with the gap " b".
  EXPECT_EQ(rsplit("\\s+(?!\\S)", "a   b"), (S{"a", "  ", " b"}));
  EXPECT_EQ(rsplit("\\s+$", "a  b  "), (S{"a  b", "  "}));
  EXPECT_EQ(rsplit("\\p{N}{1,3}", "12345"), (S{"123", "45"}));
  EXPECT_EQ(rsplit("x{2}", "xxxxx"), (S{"xx", "xx", "x"}));
  EXPECT_EQ(rsplit("a(?!b)", "abac"), (S{"ab", "a", "c"}));
  EXPECT_EQ(rsplit("^a", "aa"), (S{"a", "a"}));  // the second 'a' is not at the start
}

TEST(SplitRegex, ClassesAndEscapes) {
  EXPECT_EQ(rsplit("\\S+", "ab cd"), (S{"ab", " ", "cd"}));
  EXPECT_EQ(rsplit("\\P{L}+", "ab12cd"), (S{"ab", "12", "cd"}));
  // [^\S\n]: white space other than a newline (a negated item inside a class).
  EXPECT_EQ(rsplit("[^\\S\\n]+", "a \t\nb"), (S{"a", " \t", "\nb"}));
  EXPECT_EQ(rsplit("[\\-.]+", "a-.b"), (S{"a", "-.", "b"}));
  EXPECT_EQ(rsplit("[a-]+", "b-a-c"), (S{"b", "-a-", "c"}));
  EXPECT_EQ(rsplit("[一-龥]+", "ab中文c"), (S{"ab", "中文", "c"}));
  EXPECT_EQ(rsplit("\\d+", "x42"), (S{"x", "42"}));
  // An invalid byte is a character of its own (U+FFFD, a symbol) and keeps its byte.
  EXPECT_EQ(rsplit("[^\\p{S}]+", "a\xFF" "b"), (S{"a", "\xFF", "b"}));
}

TEST(SplitRegex, GroupsFoldedOrNot) {
  // One-character groups become a class: letters that are not a-z.
  EXPECT_EQ(rsplit("((?=[\\p{L}])([^a-z]))+", "ABcD1"), (S{"AB", "c", "D", "1"}));
  EXPECT_EQ(rsplit("(a|b|c){2}", "abcab"), (S{"ab", "ca", "b"}));
  // A group of two characters stays a repeated group.
  EXPECT_EQ(rsplit("(ab)+", "ababa"), (S{"abab", "a"}));
  EXPECT_EQ(rsplit("(?:ab|a)c", "acabc"), (S{"ac", "abc"}));
}

TEST(SplitRegex, LongRunsDoNotRecursePerCharacter) {
  // 200k letters: a quantified class is a loop, not one stack frame per character.
  const std::string text(200000, 'A');
  EXPECT_EQ(rsplit("((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|((?=[\\p{L}])([^a-z]))+", text), (S{text}));
}

TEST(SplitRegex, FailingAtEveryPositionOfARunStaysLinear) {
  // \s+$ is tried at each of the 200k spaces and fails (the text goes on):
  // rescanning the run from each one would be 2e10 steps.
  std::string text = "a";
  text += std::string(200000, ' ');
  text += "b";
  EXPECT_EQ(rsplit("\\s+$", text), (S{text}));
}

TEST(SplitRegex, UnsupportedSyntaxIsAnError) {
  for (const char* bad : {"(?i:a)", "a*?", "a++", "\\b", ".", "[a", "(a", "a)", "\\p{Lu}", "*a", "a{3,1}", "\\1"}) {
    try {
      SplitRegex re(bad);
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
}

// Random strings over characters that matter to the patterns: letters of
// both cases, contraction pieces, digits, spaces of several kinds, newlines,
// punctuation, symbols, CJK, a combining mark, an invalid byte.
std::string random_text(std::mt19937& rng, size_t max_parts) {
  static const char* const kParts[] = {
      "a", "Z", "\xC3\xA9", "s", "t", "'", "re", "LL", "D", " ", "  ", "\n", "\r", "\t", "1", "23", "!", "..", "(",
      "\xE4\xB8\xAD", "\xE3\x80\x80", "\xCC\x81", "$", "~", "\xFF", "\xE2\x80\x83", "\xF0\x9F\x9A\x80", "_", "\xC2\xBD"};
  constexpr size_t kN = sizeof(kParts) / sizeof(kParts[0]);
  std::string s;
  const size_t len = rng() % (max_parts + 1);
  for (size_t i = 0; i < len; i++) s += kParts[rng() % kN];
  return s;
}

TEST(SplitRegex, AgreesWithHandWrittenSplitters) {
  std::mt19937 rng(1234);
  const PreTokenizer chains[] = {PreTokenizer::GPT2,    PreTokenizer::Llama3,    PreTokenizer::Qwen2,
                                 PreTokenizer::Default, PreTokenizer::StarCoder, PreTokenizer::Chameleon};
  // Long strings, so that few pattern compilations cover many situations.
  for (int i = 0; i < 150; i++) {
    const std::string text = random_text(rng, 100);
    for (PreTokenizer p : chains) {
      const auto& pats = pre_tokenizer_patterns(p);
      ASSERT_EQ(pretokenize_patterns(pats, text, true), pretokenize_patterns(pats, text, false))
          << "pre-tokenizer " << (int)p << " on '" << text << "'";
    }
  }
}

}  // namespace
