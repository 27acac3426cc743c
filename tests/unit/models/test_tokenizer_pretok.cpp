// Pre-tokenizers without llama.cpp test vocabs: a few strings per distinct
// list of split regexes, with the words worked out by hand from the regexes
// (models/pretok_patterns.cpp), and the tokenizer.ggml.pre name table.
#include <gtest/gtest.h>

#include "models/vocab.h"

using namespace engine;

namespace {

using S = std::vector<std::string>;

S split(PreTokenizer pre, const std::string& text) {
  S out;
  for (std::string_view w : pretokenize(pre, text)) out.emplace_back(w);
  return out;
}

TEST(PreTokenizerFamilies, DeepSeekLLM) {
  // Newlines alone; letter runs of the Latin/Greek/Cyrillic class with one
  // leading space; punctuation runs; CJK runs; digit runs; the rest as gaps.
  EXPECT_EQ(split(PreTokenizer::DeepSeekLLM, "Hello world\n123 中文!!"),
            (S{"Hello", " world", "\n", "123", " ", "中文", "!!"}));
  EXPECT_EQ(split(PreTokenizer::DeepSeekLLM, "Привет мир"), (S{"Привет", " мир"}));
  EXPECT_EQ(split(PreTokenizer::DeepSeekLLM, "a  b"), (S{"a", " ", " b"}));
}

TEST(PreTokenizerFamilies, DeepSeekCoder) {
  // '=' is a symbol, not \p{P}: " =" is left between the letter matches.
  EXPECT_EQ(split(PreTokenizer::DeepSeekCoder, "x = foo(1, 23);\n中文"),
            (S{"x", " =", " foo", "(", "1", ",", " ", "2", "3", ");", "\n", "中文"}));
}

TEST(PreTokenizerFamilies, DeepSeekV3) {
  // Digits in threes first, CJK runs next, then: one ASCII punctuation mark
  // joins the letters after it (".x"), a space joins the word after it.
  EXPECT_EQ(split(PreTokenizer::DeepSeekV3, "Hello, world! 12345 日本語.x"),
            (S{"Hello", ",", " world", "!", " ", "123", "45", " ", "日本語", ".x"}));
  EXPECT_EQ(split(PreTokenizer::DeepSeekV3, "a;\n\nb"), (S{"a", ";\n\n", "b"}));
}

TEST(PreTokenizerFamilies, FalconVersusDefault) {
  // Falcon's first stage counts ` among the symbols; the default's does not
  // and has a digit-run stage; both cut digits in threes.
  EXPECT_EQ(split(PreTokenizer::Falcon, "x+=`y` 1234567"), (S{"x", "+=`", "y", "`", " ", "123", "456", "7"}));
  EXPECT_EQ(split(PreTokenizer::Default, "x+=`y` 1234567"), (S{"x", "+=", "`", "y", "`", " ", "123", "456", "7"}));
}

TEST(PreTokenizerFamilies, StarCoder) {
  EXPECT_EQ(split(PreTokenizer::StarCoder, "abc 123 x1"), (S{"abc", " ", "1", "2", "3", " x", "1"}));
  EXPECT_EQ(split(PreTokenizer::StarCoder, "it's"), (S{"it", "'s"}));
}

TEST(PreTokenizerFamilies, BloomAndViking) {
  // Runs of anything but white space and . , ! ? … 。 ， 、 । ۔ ، ( | ), with one
  // leading space; the excluded characters are left as gaps.
  EXPECT_EQ(split(PreTokenizer::Bloom, "Hello, world... (x|y) 你好。再见"),
            (S{"Hello", ",", " world", "... (", "x", "|", "y", ")", " 你好", "。", "再见"}));
  EXPECT_EQ(split(PreTokenizer::Bloom, "ab 123"), (S{"ab", " 123"}));
  EXPECT_EQ(split(PreTokenizer::Viking, "ab 123"), (S{"ab", " ", "1", "2", "3"}));
}

TEST(PreTokenizerFamilies, Tekken) {
  // Letter runs split before an upper-case letter that follows lower-case ones.
  EXPECT_EQ(split(PreTokenizer::Tekken, "HelloWorld XMLHttpRequest 42"),
            (S{"Hello", "World", " XMLHttp", "Request", " ", "4", "2"}));
  EXPECT_EQ(split(PreTokenizer::Tekken, "ALLCAPS."), (S{"ALLCAPS", "."}));
  EXPECT_EQ(split(PreTokenizer::Tekken, "x.../\n"), (S{"x", ".../\n"}));
  EXPECT_EQ(split(PreTokenizer::Tekken, "a/b\n"), (S{"a", "/b", "\n"}));
}

TEST(PreTokenizerFamilies, Chameleon) {
  EXPECT_EQ(split(PreTokenizer::Chameleon, "a<sentinel:12>IMGIMGABZ  b, 7"),
            (S{"a", "<", "sentinel", ":", "1", "2", ">", "IMGIMGABZ", "  ", "b", ",", " ", "7"}));
}

TEST(PreTokenizerFamilies, EveryOneCoversTheText) {
  const std::string text = "It's 2024: naïve café — 東京\r\n\tcode(x)=y;  \xF0\x9F\x9A\x80 ok\xFF\n";
  for (size_t i = 0; i < (size_t)PreTokenizer::Count; i++) {
    std::string joined;
    for (const std::string& w : split((PreTokenizer)i, text)) {
      EXPECT_FALSE(w.empty());
      joined += w;
    }
    EXPECT_EQ(joined, text) << "pre-tokenizer " << i;
  }
}

TEST(PreTokenizerNames, FlagsFollowLlamaCpp) {
  struct Case {
    const char* name;
    PreTokenizer pre;
    bool ignore_merges, add_bos;
  };
  const Case cases[] = {
      {"llama-bpe", PreTokenizer::Llama3, true, true},     {"dbrx", PreTokenizer::Llama3, false, false},
      {"chatglm-bpe", PreTokenizer::Llama3, false, false}, {"deepseek-llm", PreTokenizer::DeepSeekLLM, false, false},
      {"mpt", PreTokenizer::GPT2, false, false},           {"command-r", PreTokenizer::StarCoder, false, false},
      {"megrez", PreTokenizer::Qwen2, false, false},       {"poro-chat", PreTokenizer::Bloom, false, false},
      {"tekken", PreTokenizer::Tekken, true, true},        {"chameleon", PreTokenizer::Chameleon, false, true},
  };
  for (const Case& c : cases) {
    PreTokenizer p = PreTokenizer::Default;
    bool im = !c.ignore_merges, bos = !c.add_bos;
    ASSERT_TRUE(pre_tokenizer_from_name(c.name, &p, &im, &bos)) << c.name;
    EXPECT_EQ(p, c.pre) << c.name;
    EXPECT_EQ(im, c.ignore_merges) << c.name;
    EXPECT_EQ(bos, c.add_bos) << c.name;
  }
  PreTokenizer p;
  bool im, bos;
  EXPECT_FALSE(pre_tokenizer_from_name("gpt-4o", &p, &im, &bos));
  const std::string names = pre_tokenizer_names();
  for (const char* n : {"default", "deepseek-v3", "viking", "minerva-7b", "gpt3-finnish", "stablelm2"})
    EXPECT_NE(names.find(n), std::string::npos) << n;
}

}  // namespace
