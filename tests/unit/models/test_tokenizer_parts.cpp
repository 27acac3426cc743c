// Tokenizer building blocks without any model file: Unicode classes, the BPE
// pre-tokenizer splits, and small hand-made SPM / BPE vocabs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "core/gguf.h"
#include "models/tokenizer.h"
#include "models/unicode.h"

using namespace engine;

namespace {

std::vector<std::string> split(PreTokenizer pre, const std::string& text) {
  std::vector<std::string> out;
  for (std::string_view w : pretokenize(pre, text)) out.emplace_back(w);
  return out;
}

using S = std::vector<std::string>;

TEST(Unicode, Categories) {
  EXPECT_EQ(unicode_category('a'), UCat::Letter);
  EXPECT_EQ(unicode_category('7'), UCat::Number);
  EXPECT_EQ(unicode_category('!'), UCat::Punctuation);
  EXPECT_EQ(unicode_category('$'), UCat::Symbol);
  EXPECT_EQ(unicode_category(' '), UCat::Separator);
  EXPECT_EQ(unicode_category('\n'), UCat::Other);
  EXPECT_EQ(unicode_category(0x00C4), UCat::Letter);   // Ä
  EXPECT_EQ(unicode_category(0x00BD), UCat::Number);   // ½
  EXPECT_EQ(unicode_category(0x6211), UCat::Letter);   // 我
  EXPECT_EQ(unicode_category(0x17B6), UCat::Mark);     // Khmer vowel sign
  EXPECT_EQ(unicode_category(0x1F680), UCat::Symbol);  // 🚀
  EXPECT_EQ(unicode_category(0x0378), UCat::Unassigned);
  EXPECT_EQ(unicode_category(0x10FFFF), UCat::Unassigned);
  EXPECT_TRUE(unicode_is_whitespace(0x3000));
  EXPECT_FALSE(unicode_is_whitespace(0x200B));
}

TEST(Unicode, ByteMappingIsABijection) {
  EXPECT_EQ(byte_to_unicode(' '), "\xC4\xA0");  // 'Ġ'
  EXPECT_EQ(byte_to_unicode('a'), "a");
  for (int b = 0; b < 256; b++) {
    const std::string& s = byte_to_unicode((uint8_t)b);
    const Utf8Char c = utf8_decode(s, 0);
    ASSERT_TRUE(c.valid);
    EXPECT_EQ(unicode_to_byte(c.cp), b);
  }
}

TEST(PreTokenizer, Gpt2) {
  EXPECT_EQ(split(PreTokenizer::GPT2, "Hello world"), (S{"Hello", " world"}));
  EXPECT_EQ(split(PreTokenizer::GPT2, "I'll go, they've   gone!!"),
            (S{"I", "'ll", " go", ",", " they", "'ve", "  ", " gone", "!!"}));
  EXPECT_EQ(split(PreTokenizer::GPT2, "a  \n"), (S{"a", "  \n"}));
  EXPECT_EQ(split(PreTokenizer::GPT2, "x 123abc"), (S{"x", " 123", "abc"}));
  EXPECT_EQ(split(PreTokenizer::GPT2, "'RE"), (S{"'", "RE"}));  // case-sensitive contractions
  EXPECT_TRUE(split(PreTokenizer::GPT2, "").empty());
}

TEST(PreTokenizer, Llama3) {
  EXPECT_EQ(split(PreTokenizer::Llama3, "1234567"), (S{"123", "456", "7"}));
  EXPECT_EQ(split(PreTokenizer::Llama3, "'RE you"), (S{"'RE", " you"}));
  EXPECT_EQ(split(PreTokenizer::Llama3, "  Hello\n\n  x"), (S{" ", " Hello", "\n\n", " ", " x"}));
  EXPECT_EQ(split(PreTokenizer::Llama3, "(a) ...\n"), (S{"(a", ")", " ...\n"}));
  EXPECT_EQ(split(PreTokenizer::Qwen2, "123"), (S{"1", "2", "3"}));
}

TEST(PreTokenizer, DefaultChain) {
  EXPECT_EQ(split(PreTokenizer::Default, "a12345b"), (S{"a", "123", "45", "b"}));
  EXPECT_EQ(split(PreTokenizer::Default, "x+=y"), (S{"x", "+=", "y"}));
}

TEST(PreTokenizer, CoversInvalidUtf8) {
  const std::string text = "ab\xFF\xC3 cd\xE2\x82";
  std::string joined;
  for (const std::string& w : split(PreTokenizer::Llama3, text)) joined += w;
  EXPECT_EQ(joined, text);
}

// A tiny SentencePiece vocab written to a temporary GGUF.
std::unique_ptr<Tokenizer> tiny_spm(bool user_defined) {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<float> scores = {0, 0, 0};
  std::vector<int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; b++) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    tokens.push_back(name);
    scores.push_back(0);
    types.push_back(6);
  }
  const std::pair<const char*, float> normal[] = {
      {"\xE2\x96\x81", -1}, {"a", -2}, {"b", -2}, {"ab", -3}, {"\xE2\x96\x81" "ab", -4}, {"bb", -1}};
  for (auto [t, s] : normal) {
    tokens.push_back(t);
    scores.push_back(s);
    types.push_back(1);
  }
  tokens.push_back("<tool>");
  scores.push_back(0);
  types.push_back(user_defined ? 4 : 3);
  GGUFWriter w;
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_f32_array("tokenizer.ggml.scores", scores);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  const std::string tmp = ::testing::TempDir() + "tiny_spm_" + std::to_string(getpid()) + ".gguf";
  w.write(tmp);
  auto t = Tokenizer::from_gguf(*GGUFFile::open(tmp));
  std::remove(tmp.c_str());
  return t;
}

TEST(SpmTiny, MergesByScoreWithByteFallback) {
  auto tok = tiny_spm(false);
  const int32_t space = tok->token_id("\xE2\x96\x81"), a = tok->token_id("a"), bb = tok->token_id("bb");
  const int32_t sab = tok->token_id("\xE2\x96\x81" "ab");
  // "▁abb": "bb" (-1) merges before "ab" (-3), leaving ▁ a bb.
  EXPECT_EQ(tok->encode("abb", false), (std::vector<int32_t>{space, a, bb}));
  EXPECT_EQ(tok->encode("ab", true), (std::vector<int32_t>{1, sab}));
  // 'c' is not in the vocab: its byte token.
  EXPECT_EQ(tok->encode("c", false), (std::vector<int32_t>{space, tok->token_id("<0x63>")}));
  EXPECT_EQ(tok->decode(tok->encode(" ab c", true)), " ab c");
}

TEST(SpmTiny, UserDefinedTokensAreAlwaysMatched) {
  auto user = tiny_spm(true);
  auto control = tiny_spm(false);
  const int32_t tool = user->token_id("<tool>");
  const auto u = user->encode("ab<tool>ab", false);
  EXPECT_NE(std::find(u.begin(), u.end(), tool), u.end());
  EXPECT_EQ(user->decode(u), "ab<tool> ab");  // the text after a special token gets a space prefix
  const auto c = control->encode("ab<tool>ab", false);
  EXPECT_EQ(std::find(c.begin(), c.end(), tool), c.end());
  const auto cs = control->encode("ab<tool>ab", false, true);
  EXPECT_NE(std::find(cs.begin(), cs.end(), tool), cs.end());
}

TEST(BpeTiny, MergesByRank) {
  // All 256 byte characters, plus merges that make "abc" two ways; rank decides.
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; b++) tokens.push_back(byte_to_unicode((uint8_t)b));
  for (const char* t : {"ab", "bc", "abc", "\xC4\xA0" "a"}) tokens.push_back(t);
  GGUFWriter w;
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", "gpt-2");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_string_array("tokenizer.ggml.merges", {"b c", "a b", "a bc", "\xC4\xA0 a"});
  const std::string tmp = ::testing::TempDir() + "tiny_bpe_" + std::to_string(getpid()) + ".gguf";
  w.write(tmp);
  auto tok = Tokenizer::from_gguf(*GGUFFile::open(tmp));
  std::remove(tmp.c_str());
  EXPECT_EQ(tok->encode("abc", false), (std::vector<int32_t>{tok->token_id("abc")}));
  EXPECT_EQ(tok->encode("abd", false), (std::vector<int32_t>{tok->token_id("ab"), 'd'}));
  // "a b" (rank 1) is taken before "Ġ a" (rank 3), so " ab" ends as Ġ + ab.
  EXPECT_EQ(tok->encode(" ab", false), (std::vector<int32_t>{' ', tok->token_id("ab")}));
  EXPECT_EQ(tok->encode(" a", false), (std::vector<int32_t>{tok->token_id("\xC4\xA0" "a")}));
  EXPECT_FALSE(tok->add_bos());
  const std::string bytes = "x\x01\xFF\n \xC3\xA9";
  EXPECT_EQ(tok->decode(tok->encode(bytes, false)), bytes);
}

}  // namespace
