// Tokenizers against llama.cpp's own test vectors (every
// ggml-vocab-*.gguf with .inp/.out in shared/models/vocab, so a vocab dropped
// there is checked too), stories260K's known encodings, round trips and
// streaming decode.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/gguf.h"
#include "models/tokenizer.h"

using namespace engine;

namespace {

// The shared test data; the environment variable ENGINE_SHARED_DIR overrides
// the build's default (a checkout whose ../shared lives elsewhere).
std::string shared(const std::string& rel) {
  const char* env = std::getenv("ENGINE_SHARED_DIR");
  return std::string(env && *env ? env : ENGINE_SHARED_DIR) + "/" + rel;
}

bool exists(const std::string& path) { return std::ifstream(path).good(); }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Tokenizers are loaded once per file: the llama-bpe vocab is 8 MB.
const Tokenizer& load(const std::string& path) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& t = cache[path];
  if (!t) t = Tokenizer::from_gguf(*GGUFFile::open(path));
  return *t;
}

#define REQUIRE_FILE(path) \
  if (!exists(path)) GTEST_SKIP() << "test data not found: " << (path)

// llama.cpp's test-tokenizer-0 format: inputs each followed by
// "\n__ggml_vocab_test__\n"; one line of space-separated ids per input.
struct Vectors {
  std::vector<std::string> inputs;
  std::vector<std::vector<int32_t>> expected;
};

Vectors read_vectors(const std::string& gguf) {
  Vectors v;
  const std::string inp = read_file(gguf + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  for (size_t pos = 0, next; (next = inp.find(sep, pos)) != std::string::npos; pos = next + sep.size())
    v.inputs.push_back(inp.substr(pos, next - pos));
  std::istringstream out(read_file(gguf + ".out"));
  for (std::string line; std::getline(out, line);) {
    std::istringstream ls(line);
    std::vector<int32_t> ids;
    for (int32_t id; ls >> id;) ids.push_back(id);
    v.expected.push_back(ids);
  }
  return v;
}

std::string ids_str(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) {
    s += ' ';
    s += std::to_string(id);
  }
  return s;
}

bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const uint8_t b = s[i];
    const size_t n = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (size_t k = 1; k < n; k++)
      if (((uint8_t)s[i + k] & 0xC0) != 0x80) return false;
    i += n;
  }
  return true;
}

// The vocab names (the * of ggml-vocab-*.gguf) that have test vectors, sorted.
// "none" when the folder is absent, so the tests report a skip.
std::vector<std::string> vocab_names() {
  namespace fs = std::filesystem;
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(shared("models/vocab"), ec)) {
    const std::string f = e.path().filename().string();
    const std::string pre = "ggml-vocab-", ext = ".gguf";
    if (f.size() <= pre.size() + ext.size() || f.compare(0, pre.size(), pre) != 0 ||
        f.compare(f.size() - ext.size(), ext.size(), ext) != 0)
      continue;
    if (!exists(e.path().string() + ".inp") || !exists(e.path().string() + ".out")) continue;
    names.push_back(f.substr(pre.size(), f.size() - pre.size() - ext.size()));
  }
  std::sort(names.begin(), names.end());
  if (names.empty()) names.push_back("none");
  return names;
}

class VocabVectors : public ::testing::TestWithParam<std::string> {
 protected:
  std::string path() const { return shared("models/vocab/ggml-vocab-" + GetParam() + ".gguf"); }
};

TEST_P(VocabVectors, MatchLlamaCpp) {
  REQUIRE_FILE(path());
  const Tokenizer& tok = load(path());
  const Vectors v = read_vectors(path());
  ASSERT_EQ(v.inputs.size(), v.expected.size());
  ASSERT_GT(v.inputs.size(), 40u);
  size_t passed = 0;
  for (size_t i = 0; i < v.inputs.size(); i++) {
    const std::vector<int32_t> got = tok.encode(v.inputs[i], false, false);
    if (got == v.expected[i]) passed++;
    else ADD_FAILURE() << "input " << i << " '" << v.inputs[i] << "'\n  got:     " << ids_str(got)
                       << "\n  expected:" << ids_str(v.expected[i]);
  }
  std::printf("[ vectors  ] %s: %zu/%zu match llama.cpp\n", GetParam().c_str(), passed, v.inputs.size());
  EXPECT_EQ(passed, v.inputs.size());
}

TEST_P(VocabVectors, DecodeInvertsEncode) {
  REQUIRE_FILE(path());
  const Tokenizer& tok = load(path());
  for (const std::string& text : read_vectors(path()).inputs) {
    EXPECT_EQ(tok.decode(tok.encode(text, false)), text);
    // With BOS (when the vocab adds one) the leading-space rule still holds.
    EXPECT_EQ(tok.decode(tok.encode(text, true)), text);
  }
}

TEST_P(VocabVectors, StreamingEqualsFullDecode) {
  REQUIRE_FILE(path());
  const Tokenizer& tok = load(path());
  for (const std::string& text : read_vectors(path()).inputs) {
    const std::vector<int32_t> ids = tok.encode(text, true);
    StreamDecoder d(tok);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string part = d.push(id);
      EXPECT_TRUE(valid_utf8(part)) << "partial character emitted for '" << text << "'";
      streamed += part;
    }
    streamed += d.flush();
    EXPECT_EQ(streamed, tok.decode(ids));
  }
}

INSTANTIATE_TEST_SUITE_P(LlamaCpp, VocabVectors, ::testing::ValuesIn(vocab_names()), [](const auto& info) {
  std::string s = info.param;
  for (char& c : s)
    if (!std::isalnum((unsigned char)c)) c = '_';
  return s;
});

TEST(Tokenizer, LlamaBpeBosFollowsMetadata) {
  const std::string p = shared("models/vocab/ggml-vocab-llama-bpe.gguf");
  REQUIRE_FILE(p);
  auto f = GGUFFile::open(p);
  // No add_bos_token key: the llama-bpe pre-tokenizer's default (BOS on) applies.
  ASSERT_FALSE(f->has("tokenizer.ggml.add_bos_token"));
  const Tokenizer& tok = load(p);
  EXPECT_TRUE(tok.add_bos());
  EXPECT_EQ(tok.bos(), f->get_int("tokenizer.ggml.bos_token_id", -1));
  EXPECT_EQ(tok.bos(), 128000);
  const std::vector<int32_t> with = tok.encode("Hello world", true);
  const std::vector<int32_t> without = tok.encode("Hello world", false);
  ASSERT_EQ(with.size(), without.size() + 1);
  EXPECT_EQ(with[0], 128000);
  EXPECT_EQ(std::vector<int32_t>(with.begin() + 1, with.end()), without);
  EXPECT_FALSE(tok.add_eos());
  EXPECT_TRUE(tok.is_eog(128001));  // <|end_of_text|> = EOS
  EXPECT_TRUE(tok.is_eog(128009));  // <|eot_id|>
  EXPECT_FALSE(tok.is_eog(128000));

  // An explicit key wins over the default.
  const Vocab& v = tok.vocab();
  GGUFWriter w;
  w.set_string("tokenizer.ggml.model", "gpt2");
  w.set_string("tokenizer.ggml.pre", "llama-bpe");
  w.set_string_array("tokenizer.ggml.tokens", v.text);
  std::vector<std::string> merges(f->find("tokenizer.ggml.merges")->strs);
  w.set_string_array("tokenizer.ggml.merges", merges);
  w.set_u32("tokenizer.ggml.bos_token_id", 128000);
  w.set_bool("tokenizer.ggml.add_bos_token", false);
  const std::string tmp = ::testing::TempDir() + "tok_nobos_" + std::to_string(getpid()) + ".gguf";
  w.write(tmp);
  auto t2 = Tokenizer::from_gguf(*GGUFFile::open(tmp));
  EXPECT_FALSE(t2->add_bos());
  EXPECT_EQ(t2->encode("Hello world", true), without);
  std::remove(tmp.c_str());
}

TEST(Tokenizer, Gpt2AddsNoBos) {
  const std::string p = shared("models/vocab/ggml-vocab-gpt-2.gguf");
  REQUIRE_FILE(p);
  const Tokenizer& tok = load(p);
  EXPECT_FALSE(tok.add_bos());
  EXPECT_EQ(tok.encode("Hello", true), tok.encode("Hello", false));
  EXPECT_TRUE(tok.is_eog(50256));
}

TEST(Tokenizer, ParseSpecialOnlyWhenAsked) {
  const std::string p = shared("models/vocab/ggml-vocab-llama-bpe.gguf");
  REQUIRE_FILE(p);
  const Tokenizer& tok = load(p);
  const std::string text = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
  const std::vector<int32_t> special = tok.encode(text, false, true);
  ASSERT_EQ(special.size(), 6u);
  EXPECT_EQ(special[0], 128006);
  EXPECT_EQ(special[2], 128007);
  EXPECT_EQ(special[5], 128009);
  EXPECT_EQ(tok.decode(special), "user\n\nHi");  // control tokens print nothing by default
  EXPECT_EQ(tok.decode(special, true), text);

  const std::vector<int32_t> plain = tok.encode(text, false, false);
  for (int32_t id : plain) EXPECT_LT(id, 128000) << "plain text produced a special token";
  EXPECT_EQ(tok.decode(plain), text);
}

TEST(Tokenizer, SpmSpecialTokensAndSpacePrefix) {
  const std::string p = shared("models/vocab/ggml-vocab-llama-spm.gguf");
  REQUIRE_FILE(p);
  const Tokenizer& tok = load(p);
  EXPECT_EQ(tok.bos(), 1);
  EXPECT_EQ(tok.eos(), 2);
  EXPECT_TRUE(tok.add_bos());
  EXPECT_TRUE(tok.is_eog(2));
  EXPECT_EQ(tok.encode("", true), std::vector<int32_t>{1});
  EXPECT_TRUE(tok.encode("", false).empty());
  // "<s>" parsed as BOS; the text after a special token gets its own space prefix.
  const std::vector<int32_t> a = tok.encode("<s>Hello", false, true);
  const std::vector<int32_t> b = tok.encode("Hello", false);
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a[0], 1);
  EXPECT_EQ(std::vector<int32_t>(a.begin() + 1, a.end()), b);
  const std::vector<int32_t> c = tok.encode("<s>Hello", false, false);
  EXPECT_NE(c[0], 1);
  EXPECT_EQ(tok.decode(c), "<s>Hello");
  EXPECT_EQ(tok.token_to_piece(1), "");
  EXPECT_EQ(tok.token_to_piece(1, true), "<s>");
  EXPECT_EQ(tok.token_id("<0x0A>"), 13);
  EXPECT_EQ(tok.token_to_piece(13), "\n");
  EXPECT_EQ(tok.token_id("no such token"), -1);
  EXPECT_THROW(tok.token_to_piece(32000), Error);
}

TEST(Tokenizer, Stories260K) {
  const std::string p = shared("models/stories260K.gguf");
  REQUIRE_FILE(p);
  const Tokenizer& tok = load(p);
  EXPECT_EQ(tok.n_vocab(), 512);
  using V = std::vector<int32_t>;
  EXPECT_EQ(tok.encode("Once upon a time", true), (V{1, 403, 407, 261, 378}));
  EXPECT_EQ(tok.encode("I believe the meaning of life is", true),
            (V{1, 359, 329, 421, 417, 411, 360, 265, 284, 411, 303, 299, 373, 397, 431, 411, 410, 293}));
  EXPECT_EQ(tok.encode("\xC3\xA1", true), (V{1, 410, 198, 164}));  // "á" through byte fallback
  EXPECT_EQ(tok.encode("One day, Lily met a Shoggoth", true),
            (V{1, 385, 328, 432, 317, 284, 316, 261, 301, 415, 414, 428, 428, 309, 415}));
  EXPECT_EQ(tok.decode(V{1, 410, 198, 164}), "\xC3\xA1");
}

TEST(Tokenizer, StreamingHoldsBackSplitCharacters) {
  const std::string p = shared("models/stories260K.gguf");
  REQUIRE_FILE(p);
  const Tokenizer& tok = load(p);
  // "á" is two byte tokens: nothing may come out until both have arrived.
  StreamDecoder d(tok);
  EXPECT_EQ(d.push(1), "");
  EXPECT_EQ(d.push(410), "");  // '▁' alone, stripped as the leading space
  EXPECT_EQ(d.push(198), "");
  EXPECT_EQ(d.push(164), "\xC3\xA1");
  EXPECT_EQ(d.flush(), "");
  // A character cut off at the end comes out of flush().
  StreamDecoder e(tok);
  EXPECT_EQ(e.push(198), "");
  EXPECT_EQ(e.flush(), "\xC3");
}

TEST(Tokenizer, Stories260KEvalTextIsFast) {
  const std::string p = shared("models/stories260K.gguf");
  const std::string txt = shared("data/stories260K-eval.txt");
  REQUIRE_FILE(p);
  REQUIRE_FILE(txt);
  const Tokenizer& tok = load(p);
  const std::string text = read_file(txt);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = tok.encode(text, true);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ timing   ] %zu bytes -> %zu tokens in %.1f ms\n", text.size(), ids.size(), ms);
  EXPECT_GT(ids.size(), text.size() / 8);
  EXPECT_EQ(tok.decode(ids), text);
}

TEST(Tokenizer, MissingOrUnsupportedModelIsAnError) {
  const std::string tmp = ::testing::TempDir() + "tok_bad_" + std::to_string(getpid()) + ".gguf";
  {
    GGUFWriter w;
    w.set_string("general.architecture", "llama");
    w.write(tmp);
    EXPECT_THROW(Tokenizer::from_gguf(*GGUFFile::open(tmp)), Error);
  }
  {
    GGUFWriter w;
    w.set_string("tokenizer.ggml.model", "bert");
    w.set_string_array("tokenizer.ggml.tokens", {"a", "b"});
    w.write(tmp);
    EXPECT_THROW(Tokenizer::from_gguf(*GGUFFile::open(tmp)), Error);
  }
  {
    GGUFWriter w;
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", "no-such-pre");
    w.set_string_array("tokenizer.ggml.tokens", {"a", "b"});
    w.set_string_array("tokenizer.ggml.merges", {"a b"});
    w.write(tmp);
    try {
      Tokenizer::from_gguf(*GGUFFile::open(tmp));
      ADD_FAILURE() << "unknown pre-tokenizer accepted";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("'no-such-pre'"), std::string::npos) << msg;
      // The message lists what is supported.
      for (const char* name : {"llama-bpe", "deepseek-llm", "tekken", "chameleon"})
        EXPECT_NE(msg.find(name), std::string::npos) << msg;
    }
  }
  std::remove(tmp.c_str());
}

}  // namespace
